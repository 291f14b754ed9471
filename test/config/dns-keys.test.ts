import assert from 'node:assert/strict';
import { test } from 'node:test';
import { redactSecrets, REDACTED } from '../../src/config/describe.ts';
import { acmeSection, problemList as problems } from '../support/config.ts';

const rfc2136 = { server: '127.0.0.1:5353', keyName: 'certgate-key', keyAlgorithm: 'hmac-sha256', keySecret: 'c2VjcmV0LXNlY3JldA==' };

test('acme.dns: the issue’s spellings parse, with defaults for resolvers and propagationTimeout', () => {
  const a = acmeSection({ dns: { provider: 'rfc2136', rfc2136, resolvers: ['127.0.0.1:5353'], propagationTimeout: '2m', delegation: { zone: 'dcv.platform.example' } } });
  assert.deepEqual(a.dns, { provider: 'rfc2136', rfc2136, resolvers: ['127.0.0.1:5353'], propagationTimeout: 120_000, delegation: { zone: 'dcv.platform.example' } });
  const d = acmeSection({ dns: { provider: 'cloudflare', cloudflare: { apiToken: 't0k' } } }).dns!;
  assert.deepEqual(d.resolvers, []);
  assert.equal(d.propagationTimeout, 120_000);
  assert.deepEqual(acmeSection({ dns: { provider: 'exec', exec: { command: ['/usr/local/bin/dns-hook'] } } }).dns!.exec, { command: ['/usr/local/bin/dns-hook'] });
  assert.equal(acmeSection({}).dns, undefined);
  // keyAlgorithm defaults to hmac-sha256
  assert.equal(acmeSection({ dns: { provider: 'rfc2136', rfc2136: { ...rfc2136, keyAlgorithm: undefined } } }).dns!.rfc2136!.keyAlgorithm, 'hmac-sha256');
});

test('acme.dns: wrong values are refused with the key named', () => {
  const p = (dns: unknown) => problems({ acme: { dns } }).join('\n');
  assert.match(p({ provider: 'route53' }), /acme\.dns\.provider: must be one of rfc2136, cloudflare, exec/);
  assert.match(p({ provider: 'rfc2136' }), /acme\.dns\.rfc2136: provider is rfc2136: give acme\.dns\.rfc2136 its settings/);
  assert.match(p({ provider: 'exec', exec: { command: ['x'] }, cloudflare: { apiToken: 't' } }), /acme\.dns\.cloudflare: remove it/);
  assert.match(p({ provider: 'rfc2136', rfc2136: { ...rfc2136, keyAlgorithm: 'hmac-md5' } }), /acme\.dns\.rfc2136\.keyAlgorithm: must be "hmac-sha256" or "hmac-sha512"/);
  assert.match(p({ provider: 'rfc2136', rfc2136: { ...rfc2136, keySecret: 'not base64!' } }), /acme\.dns\.rfc2136\.keySecret: must be the TSIG secret in base64/);
  assert.match(p({ provider: 'exec', exec: { command: ['x'] }, resolvers: ['ns1.example'] }), /acme\.dns\.resolvers\[0\]: must be a DNS server IP/);
  assert.match(p({ provider: 'exec', exec: { command: ['x'] }, propagationTimeout: 'soon' }), /acme\.dns\.propagationTimeout: "soon" is not a duration/);
  assert.match(p({ provider: 'exec', exec: { command: ['x'] }, unknown: 1 }), /acme\.dns/);
});

test('acme.challenges: dns-01 may be listed only with acme.dns', () => {
  assert.match(problems({ acme: { challenges: ['http-01', 'dns-01'] } }).join('\n'), /acme\.challenges: dns-01 needs acme\.dns/);
  const a = acmeSection({ challenges: ['dns-01', 'http-01'], dns: { provider: 'exec', exec: { command: ['x'] } } });
  assert.deepEqual(a.challenges, ['dns-01', 'http-01']);
  // not listed by default: on-demand names keep http-01/tls-alpn-01
  assert.deepEqual(acmeSection({ dns: { provider: 'exec', exec: { command: ['x'] } } }).challenges, ['http-01', 'tls-alpn-01']);
});

test('certgate validate redacts the TSIG secret and the Cloudflare token', () => {
  const out = JSON.stringify(redactSecrets({ acme: { dns: { provider: 'rfc2136', rfc2136, cloudflare: { apiToken: 'cf-token-value' } } } }));
  assert.ok(!out.includes(rfc2136.keySecret) && !out.includes('cf-token-value'), out);
  assert.equal(out.split(REDACTED).length - 1, 2);
});
