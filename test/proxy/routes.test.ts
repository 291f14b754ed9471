import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RouteTable, normalizeHost, parseUpstream } from '../../src/proxy/routes.ts';

describe('normalizeHost', () => {
  it('lower-cases, strips the port and one trailing dot, canonicalises IPv6', () => {
    assert.equal(normalizeHost('App.Example.ORG'), 'app.example.org');
    assert.equal(normalizeHost('app.example.org:8443'), 'app.example.org');
    assert.equal(normalizeHost('app.example.org.'), 'app.example.org');
    assert.equal(normalizeHost('app.example.org.:443'), 'app.example.org');
    assert.equal(normalizeHost('10.0.0.1:80'), '10.0.0.1');
    assert.equal(normalizeHost('[::1]:8080'), '[::1]');
    assert.equal(normalizeHost('[0:0:0:0::1]'), '[::1]');
    assert.equal(normalizeHost('[2001:DB8::1]:443'), '[2001:db8::1]');
    assert.equal(normalizeHost('::1'), '[::1]');
    assert.equal(normalizeHost('[nonsense]'), '');
    assert.equal(normalizeHost('[::1'), '');
    assert.equal(normalizeHost(''), '');
  });
});

describe('parseUpstream', () => {
  it('accepts http/https origins and normalises them', () => {
    assert.deepEqual(parseUpstream('http://127.0.0.1:8080'), {
      origin: 'http://127.0.0.1:8080',
      secure: false,
      hostname: '127.0.0.1',
      port: 8080,
      servername: undefined,
    });
    const tls = parseUpstream('https://App.Internal/');
    assert.equal(tls.origin, 'https://app.internal');
    assert.equal(tls.port, 443);
    assert.equal(tls.servername, 'app.internal');
    const v6 = parseUpstream('http://[::1]:9000');
    assert.equal(v6.hostname, '::1');
    assert.equal(v6.origin, 'http://[::1]:9000');
  });

  it('rejects what it cannot proxy to', () => {
    assert.throws(() => parseUpstream('127.0.0.1:8080'), /scheme|not a URL/);
    assert.throws(() => parseUpstream('ws://127.0.0.1:8080'), /scheme/);
    assert.throws(() => parseUpstream('http://u:p@127.0.0.1:8080'), /credentials/);
    assert.throws(() => parseUpstream('http://127.0.0.1:8080/api'), /without path/);
    assert.throws(() => parseUpstream('http://127.0.0.1:8080/?a=1'), /without path/);
  });
});

describe('RouteTable', () => {
  const A = 'http://127.0.0.1:1001';
  const B = 'http://127.0.0.1:1002';
  const C = 'http://127.0.0.1:1003';

  it('prefers exact names, then the most specific wildcard, then the default', () => {
    const table = new RouteTable(
      [
        { hosts: ['example.org', 'special.a.example.org'], upstream: A },
        { hosts: ['*.example.org'], upstream: B },
        { hosts: ['*.a.example.org'], upstream: C },
      ],
      'http://127.0.0.1:1009',
    );
    const at = (h: string): string | undefined => table.lookup(normalizeHost(h))?.origin;
    assert.equal(at('example.org'), A);
    assert.equal(at('special.a.example.org'), A);
    assert.equal(at('x.example.org'), B);
    assert.equal(at('a.example.org'), B, '*.a.example.org does not match a.example.org itself');
    assert.equal(at('x.a.example.org'), C);
    assert.equal(at('y.x.a.example.org'), 'http://127.0.0.1:1009', '*. matches exactly one label');
    assert.equal(at('y.x.example.org'), 'http://127.0.0.1:1009');
    assert.equal(at('example.com'), 'http://127.0.0.1:1009');
    assert.equal(at(''), 'http://127.0.0.1:1009');
    assert.equal(new RouteTable([{ hosts: ['*.example.org'], upstream: B }]).lookup('example.org'), undefined);
  });

  it('**.suffix matches any depth; the most specific pattern wins, *. before **. at one suffix', () => {
    const D = 'http://127.0.0.1:1004';
    const table = new RouteTable([
      { hosts: ['**.example.org'], upstream: A },
      { hosts: ['*.example.org', '**.a.example.org'], upstream: B },
      { hosts: ['*.a.example.org'], upstream: C },
      { hosts: ['exact.a.example.org', '**.bücher.test'], upstream: D },
    ]);
    const at = (h: string): string | undefined => table.lookup(normalizeHost(h))?.origin;
    assert.equal(at('example.org'), undefined, 'neither wildcard matches the suffix itself');
    assert.equal(at('x.example.org'), B, '*.example.org is more specific than **.example.org');
    assert.equal(at('x.y.example.org'), A, 'only **.example.org matches two labels down');
    assert.equal(at('a.example.org'), B);
    assert.equal(at('x.a.example.org'), C);
    assert.equal(at('exact.a.example.org'), D);
    assert.equal(at('x.y.a.example.org'), B, '**.a.example.org before the farther **.example.org');
    assert.equal(at('p.q.r.s.a.example.org'), B);
    assert.equal(at('p.q.xn--bcher-kva.test'), D, 'Unicode patterns become A-labels');
    assert.equal(at('xn--bcher-kva.test'), undefined);
  });

  it('shares one target per origin and lists them', () => {
    const table = new RouteTable([
      { hosts: ['a.test'], upstream: A },
      { hosts: ['b.test'], upstream: 'http://127.0.0.1:1001/' },
    ]);
    assert.equal(table.lookup('a.test'), table.lookup('b.test'));
    assert.deepEqual([...table.targets.keys()], [A]);
  });

  it('rejects malformed patterns', () => {
    for (const bad of ['*', '*.', '*.*.example.org', 'a.*.example.org', 'foo*.example.org', '', '[zz]', '**', '**.', '***.example.org', '**.*.example.org', '*.**.example.org', '**.[::1]']) {
      assert.throws(() => new RouteTable([{ hosts: [bad], upstream: A }]), /invalid host/, bad);
    }
  });

  // Correctness at scale only: how fast building and lookups are is `npm run bench`'s business,
  // not a timed assertion here.
  it('handles 100k routes: every exact host and wildcard is found, nothing else', () => {
    const routes = [];
    for (let i = 0; i < 50_000; i++) {
      routes.push({ hosts: [`site${i}.example.com`, i % 2 ? `*.tenant${i}.example.net` : `**.tenant${i}.example.net`], upstream: i % 2 ? A : B });
    }
    const table = new RouteTable(routes);
    assert.equal(table.size, 100_000);
    assert.equal(table.lookup('site49999.example.com')?.origin, A);
    assert.equal(table.lookup('www.tenant12.example.net')?.origin, B);
    assert.equal(table.lookup('tenant12.example.net'), undefined);
    assert.equal(table.lookup('site50000.example.com'), undefined);

    let hits = 0;
    for (let i = 0; i < 200_000; i++) {
      const tenant = i % 50_000;
      // `*.` (odd tenants) matches one label only; `**.` (even tenants) any depth.
      if (table.lookup(`a.tenant${tenant}.example.net`)?.origin === (tenant % 2 ? A : B)) hits++;
      if (table.lookup(`a.b.tenant${tenant}.example.net`)?.origin === (tenant % 2 ? undefined : B)) hits++;
    }
    assert.equal(hits, 400_000);
  });
});
