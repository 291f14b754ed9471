// acme.issuers (and its one-issuer shorthand), acme.budgets, acme.retry, onDemand.preflight.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parse, problemList as problems } from '../support/config.ts';
import { LETS_ENCRYPT_PRODUCTION } from '../../src/config/schema.ts';


test('acme.directory/eab/trustedRoots are the one-issuer shorthand', () => {
  assert.deepEqual(parse({}).acme.issuers, [{ directory: LETS_ENCRYPT_PRODUCTION, trustedRoots: [] }]);
  const c = parse({ acme: { directory: 'https://ca.test/dir', eab: { kid: 'k', hmac: 'h' }, trustedRoots: ['root.pem'] } });
  // Relative roots are resolved against the config's directory, like every path in the config.
  assert.deepEqual(c.acme.issuers, [{ directory: 'https://ca.test/dir', trustedRoots: ['/etc/certgate/root.pem'], eab: { kid: 'k', hmac: 'h' } }]);
  assert.equal(c.acme.directory, 'https://ca.test/dir');
});

test('acme.issuers: ordered, with staging and EAB; acme.directory names the first', () => {
  const c = parse({
    acme: {
      trustedRoots: ['common.pem'],
      issuers: [
        { directory: 'https://a.test/dir', staging: 'https://a-staging.test/dir' },
        { directory: 'https://b.test/dir', eab: { kid: 'k', hmac: 'h' }, trustedRoots: ['b.pem'] },
      ],
    },
  });
  assert.equal(c.acme.directory, 'https://a.test/dir');
  assert.deepEqual(c.acme.issuers[1], { directory: 'https://b.test/dir', eab: { kid: 'k', hmac: 'h' }, trustedRoots: ['/etc/certgate/common.pem', '/etc/certgate/b.pem'] });
  assert.equal(c.acme.issuers[0]!.staging, 'https://a-staging.test/dir');
});

test('acme.issuers together with acme.directory is an error that says what to do', () => {
  const p = problems({ acme: { directory: 'https://x.test/dir', issuers: [{ directory: 'https://a.test/dir' }] } });
  assert.ok(p.some((m) => m.startsWith('acme.directory: remove it when acme.issuers is set')), p.join('\n'));
  assert.ok(problems({ acme: { issuers: [] } }).some((m) => m.startsWith('acme.issuers: list at least one issuer')));
});

test('acme.budgets: unset by default (Let’s Encrypt’s limits then guard Let’s Encrypt only); each key defaults to LE’s', () => {
  assert.equal(parse({}).acme.budgets, undefined);
  const b = parse({ acme: { budgets: { newOrders: { limit: 10, window: '1h' } } } }).acme.budgets!;
  assert.deepEqual(b.newOrders, { limit: 10, window: 3_600_000 });
  assert.deepEqual(b.certificatesPerDomain, { limit: 50, window: 7 * 86_400_000 });
  assert.deepEqual(b.duplicates, { limit: 5, window: 7 * 86_400_000 });
  assert.deepEqual(b.failedAuthorizations, { limit: 5, window: 3_600_000 });
  assert.ok(problems({ acme: { budgets: { duplicates: { limit: 0, window: '1d' } } } }).some((m) => m.startsWith('acme.budgets.duplicates.limit:')));
});

test('acme.retry defaults to 1m, 10m, 100m, then daily, give up after 30 days', () => {
  assert.deepEqual(parse({}).acme.retry, { delays: [60_000, 600_000, 6_000_000], then: 86_400_000, giveUpAfter: 30 * 86_400_000 });
  assert.ok(problems({ acme: { retry: { delays: ['soon'] } } }).some((m) => m.startsWith('acme.retry.delays[0]:')));
});

test('onDemand.preflight: off by default; resolvers are host:port', () => {
  assert.equal(parse({}).onDemand.preflight, false);
  assert.deepEqual(parse({ onDemand: { preflight: { resolvers: ['127.0.0.1:8053', '[::1]:53', '9.9.9.9'] } } }).onDemand.preflight, {
    resolvers: ['127.0.0.1:8053', '[::1]:53', '9.9.9.9'],
    httpPort: 80,
    timeout: 5000,
  });
  assert.ok(problems({ onDemand: { preflight: { resolvers: ['dns.example'] } } }).some((m) => m.startsWith('onDemand.preflight')));
});

test('acme.lockTtl defaults to 10s: a dead holder is replaced within seconds (the holder refreshes it five times per lease)', () => {
  assert.equal(parse({}).acme.lockTtl, 10_000);
  assert.equal(parse({ acme: { lockTtl: '30s' } }).acme.lockTtl, 30_000);
});
