// `certgate validate` output (src/config/describe.ts): what each pattern matches, the one-label
// warning, and no secret printed.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { describePattern, formatValidation, REDACTED, redactSecrets, wildcardWarnings } from '../../src/config/describe.ts';
import { parseConfig } from '../../src/config/load.ts';

const SECRETS = ['ADMIN-TOKEN-0123456789', 'EAB-HMAC-ISSUER-ONE', 'EAB-HMAC-ISSUER-TWO', 'EAB-HMAC-SHORTHAND', 'REDIS-URL-PW', 'SENTINEL-PW', 'CLUSTER-PW', 'ASK-QUERY-TOKEN', 'ASK-USER-PW', 'DIRECTORY-TOKEN'];

const base = { listen: { https: '127.0.0.1:5001', http: '127.0.0.1:5002' } };
const configs: Array<[string, Record<string, unknown>]> = [
  [
    'issuers with EAB, redis URL password, admin token, ask credentials',
    {
      ...base,
      storage: { redis: { url: 'redis://default:REDIS-URL-PW@127.0.0.1:6379/0' } },
      acme: {
        issuers: [
          { directory: 'https://ca.example/dir', eab: { kid: 'kid-1', hmac: 'EAB-HMAC-ISSUER-ONE' } },
          { directory: 'https://DIRECTORY-TOKEN@ca2.example/dir', eab: { kid: 'kid-2', hmac: 'EAB-HMAC-ISSUER-TWO' } },
        ],
      },
      onDemand: { ask: 'http://ops:ASK-USER-PW@127.0.0.1:9000/allow?api_token=ASK-QUERY-TOKEN&x=1' },
      admin: { token: 'ADMIN-TOKEN-0123456789' },
    },
  ],
  ['acme.eab shorthand, sentinel password', { ...base, storage: { redis: { sentinel: { name: 'm', sentinels: [{ host: '127.0.0.1', port: 26379 }], password: 'SENTINEL-PW' } } }, acme: { eab: { kid: 'k', hmac: 'EAB-HMAC-SHORTHAND' } } }],
  ['cluster root nodes with a password (the @ unescaped)', { ...base, storage: { redis: { cluster: { rootNodes: ['redis://:CLUSTER-PW@127.0.0.1:7000', 'rediss://u:CLUSTER-PW@x@127.0.0.1:7001'] } } } }],
];

describe('certgate validate output', () => {
  for (const [what, raw] of configs) {
    test(`no secret is printed: ${what}`, () => {
      const out = formatValidation(parseConfig(raw, { baseDir: '/tmp', file: '/tmp/c.yaml' }));
      for (const secret of SECRETS) assert.ok(!out.includes(secret), `${secret} printed:\n${out}`);
      assert.ok(!out.includes('@x@'), 'nothing of a password with an @ is left');
      assert.ok(out.includes(REDACTED), out);
      // Still the effective config: non-secret values are kept.
      const json = JSON.parse(out.slice(out.indexOf('{')));
      assert.deepEqual(json.listen.https, { host: '127.0.0.1', port: 5001 });
    });
  }

  test('redacts what a caller must not print, keeps the rest readable', () => {
    const out = redactSecrets({
      storage: { redis: { url: 'redis://:pw@127.0.0.1:6379', prefix: 'certgate:' } },
      acme: { eab: { kid: 'kid', hmac: 'h' }, keyType: 'ecdsa-p256', directory: 'https://acme.example/dir' },
      tls: { fallback: { key: '/etc/certgate/key.pem' } },
      admin: { token: 'tok' },
      onDemand: { ask: 'http://127.0.0.1:9000/allow?token=abc&domain=x' },
    }) as Record<string, Record<string, Record<string, unknown>>>;
    assert.equal(out.storage!.redis!.url, 'redis://:[redacted]@127.0.0.1:6379');
    assert.equal(out.storage!.redis!.prefix, 'certgate:');
    assert.deepEqual(out.acme!.eab, { kid: 'kid', hmac: REDACTED });
    assert.equal(out.acme!.keyType, 'ecdsa-p256');
    assert.equal(out.acme!.directory, 'https://acme.example/dir');
    assert.deepEqual(out.tls!.fallback, { key: '/etc/certgate/key.pem' }, 'a key file path is not a secret');
    assert.deepEqual(out.admin, { token: REDACTED });
    assert.equal(out.onDemand!.ask, 'http://127.0.0.1:9000/allow?token=[redacted]&domain=x');
  });

  test('says what each pattern matches', () => {
    assert.equal(describePattern('*.x.test'), '*.x.test: one label below x.test (a.x.test, not a.b.x.test nor x.test)');
    assert.equal(describePattern('**.x.test'), '**.x.test: any depth below x.test (a.x.test, a.b.x.test, not x.test)');
    assert.equal(describePattern('shop.x.test'), 'shop.x.test: that name only');
    const out = formatValidation(
      parseConfig({ ...base, onDemand: { allow: ['*.x.test', '**.y.test'] }, proxy: { routes: [{ hosts: ['shop.z.test', '*.x.test'], upstream: 'http://127.0.0.1:9090' }] } }, { baseDir: '/tmp' }),
    );
    assert.match(out, /^ {2}onDemand\.allow\[0\] {2}\*\.x\.test: one label below x\.test/m);
    assert.match(out, /^ {2}onDemand\.allow\[1\] {2}\*\*\.y\.test: any depth below y\.test/m);
    assert.match(out, /^ {2}proxy\.routes\[0\]\.hosts\[0\] {2}shop\.z\.test: that name only/m);
    assert.match(out, /^ {2}proxy\.routes\[0\]\.hosts\[1\] {2}\*\.x\.test: one label below x\.test/m);
  });

  test('one warning per distinct *. pattern, naming every key it is at', () => {
    const config = parseConfig(
      { ...base, onDemand: { allow: ['*.x.test', '**.y.test', 'a.z.test'] }, proxy: { routes: [{ hosts: ['*.x.test', '*.w.test', '**.v.test'], upstream: 'http://127.0.0.1:9090' }] } },
      { baseDir: '/tmp' },
    );
    const warnings = wildcardWarnings(config);
    assert.deepEqual(
      warnings.map((w) => [w.pattern, w.keys]),
      [
        ['*.x.test', ['onDemand.allow[0]', 'proxy.routes[0].hosts[0]']],
        ['*.w.test', ['proxy.routes[0].hosts[1]']],
      ],
    );
    assert.match(warnings[0]!.message, /^\*\.x\.test \(onDemand\.allow\[0\], proxy\.routes\[0\]\.hosts\[0\]\) now matches exactly one label below x\.test .*\*\*\.x\.test/);
    assert.equal(wildcardWarnings(parseConfig({ ...base, onDemand: { allow: ['**.y.test'] } }, { baseDir: '/tmp' })).length, 0);
  });
});
