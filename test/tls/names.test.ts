import assert from 'node:assert/strict';
import { test } from 'node:test';
import { normalizeServerName } from '../../src/tls/names.ts';

test('normalises case, trailing dot and IDN', () => {
  assert.equal(normalizeServerName('Blog.Alice.COM'), 'blog.alice.com');
  assert.equal(normalizeServerName('blog.alice.com.'), 'blog.alice.com');
  assert.equal(normalizeServerName('bücher.example'), 'xn--bcher-kva.example');
  assert.equal(normalizeServerName('xn--bcher-kva.example'), 'xn--bcher-kva.example');
  assert.equal(normalizeServerName('a-b.c0.example'), 'a-b.c0.example');
});

test('rejects what a CA could not issue for', () => {
  for (const bad of [
    '', undefined, null, '.', 'localhost', '127.0.0.1', '::1', '[::1]', '1.2.3.4.', 'a..b.com', '-a.example.com', 'a-.example.com',
    'bad_name.example.com', 'bad!.example.com', 'two words.example.com', '*.example.com', 'a.example.123',
    '0.0.0.0', '::ffff:127.0.0.1', '2001:db8::1', 'fe80::1%eth0', '\uff11\uff12\uff17.\uff10.\uff10.\uff11', // fullwidth 127.0.0.1
    `${'a'.repeat(64)}.example.com`, `${'a'.repeat(60)}.`.repeat(5) + 'com', 'a/b.example.com', 'a\0b.example.com', 'a%2e.example.com',
  ]) {
    assert.equal(normalizeServerName(bad as string), undefined, `should reject ${JSON.stringify(bad)}`);
  }
});
