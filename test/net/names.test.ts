import assert from 'node:assert/strict';
import { test } from 'node:test';
import { normalizeDomainName, normalizeServerName } from '../../src/net/names.ts';

test('normalises case, trailing dot; valid A-labels pass', () => {
  assert.equal(normalizeServerName('Blog.Alice.COM'), 'blog.alice.com');
  assert.equal(normalizeServerName('blog.alice.com.'), 'blog.alice.com');
  assert.equal(normalizeServerName('xn--bcher-kva.example'), 'xn--bcher-kva.example');
  assert.equal(normalizeServerName('XN--BCHER-KVA.example'), 'xn--bcher-kva.example');
  assert.equal(normalizeServerName('a-b.c0.example'), 'a-b.c0.example');
  for (const idn of ['xn--55qx5d.example', 'xn--strae-oqa.example', 'www.xn--nxasmq6b.example', 'xn--ls8h.example', 'shop.xn--55qx5d']) {
    assert.equal(normalizeServerName(idn), idn, idn);
  }
});

test('SNI must be ASCII (RFC 6066: A-labels); raw UTF-8, read as latin1 by node, is refused', () => {
  for (const bad of ['bücher.example', 'b\u00c3\u00bccher.example', 'caf\u00e9.example', '\u043f\u0440\u0438\u043c\u0435\u0440.example', 'a.example\u00ad']) {
    assert.equal(normalizeServerName(bad), undefined, JSON.stringify(bad));
  }
});

test("other labels with '--' in their 3rd and 4th places are reserved (RFC 5891): refused; '--' elsewhere is fine", () => {
  for (const reserved of ['ab--cd.example', 'www.zz--top.example', 'a1--.example']) assert.equal(normalizeServerName(reserved), undefined, reserved);
  assert.equal(normalizeServerName('a--b.example'), 'a--b.example');
  assert.equal(normalizeServerName('abc--d.example'), 'abc--d.example');
});

test('invalid xn-- labels are refused: not punycode, or not round-tripping', () => {
  for (const bad of [
    'xn--.example', // empty punycode
    'xn--a.example', // undecodable
    'xn--abc-.example', // decodes to plain "abc": not an A-label
    'xn--a-ecp.example', // invalid punycode
    'xn--xn--bcher-kva-.example', // decodes to an ASCII label
    'xn--bcher-kva-.example',
    'www.xn--0.example',
    'shop.xn--a',
  ]) {
    assert.equal(normalizeServerName(bad), undefined, bad);
    assert.equal(normalizeDomainName(bad), undefined, bad);
  }
});

test('names an operator typed may be Unicode: converted to A-labels', () => {
  assert.equal(normalizeDomainName('bücher.example'), 'xn--bcher-kva.example');
  assert.equal(normalizeDomainName('Bücher.Example.'), 'xn--bcher-kva.example');
  assert.equal(normalizeDomainName('shop.example.com'), 'shop.example.com');
  assert.equal(normalizeDomainName('xn--bcher-kva.example'), 'xn--bcher-kva.example');
  assert.equal(normalizeDomainName('\uff11\uff12\uff17.\uff10.\uff10.\uff11'), undefined, 'fullwidth 127.0.0.1');
  assert.equal(normalizeDomainName('*.bücher.example'), undefined);
});

test('rejects what a CA could not issue for', () => {
  for (const bad of [
    '', undefined, null, '.', 'localhost', '127.0.0.1', '::1', '[::1]', '1.2.3.4.', 'a..b.com', '-a.example.com', 'a-.example.com',
    'bad_name.example.com', 'bad!.example.com', 'two words.example.com', '*.example.com', 'a.example.123',
    '0.0.0.0', '::ffff:127.0.0.1', '2001:db8::1', 'fe80::1%eth0', '\uff11\uff12\uff17.\uff10.\uff10.\uff11', // fullwidth 127.0.0.1
    `${'a'.repeat(64)}.example.com`, `${'a'.repeat(60)}.`.repeat(5) + 'com', 'a/b.example.com', 'a\0b.example.com', 'a%2e.example.com',
  ]) {
    assert.equal(normalizeServerName(bad as string), undefined, `should reject ${JSON.stringify(bad)}`);
    assert.equal(normalizeDomainName(bad as string), undefined, `should reject ${JSON.stringify(bad)}`);
  }
});
