// Renewal timing (fraction, half-life under 10 days, per-name jitter), ARI cert IDs and window
// picks, and the hour buckets of the index.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { webcrypto } from 'node:crypto';
import '../../src/acme/reflect-shim.ts';
import * as x509 from '@peculiar/x509';
import { ariCertId, authorityKeyIdentifier, nextFetchAt, pickInWindow, serialDer } from '../../src/acme/ari.ts';
import { bucketsBetween, hourBucket } from '../../src/maintain/renewal-index.ts';
import { renewalBackoffMs } from '../../src/maintain/scheduler.ts';
import { dueTime, renewalTime, unitHash } from '../../src/maintain/timing.ts';

const DAY = 86_400_000;

test('timing: 90-day certificate is due when a third remains; under 10 days at half-life', () => {
  const nb = Date.parse('2026-01-01T00:00:00Z');
  assert.equal(dueTime(nb, nb + 90 * DAY, 1 / 3), nb + 60 * DAY);
  assert.equal(dueTime(nb, nb + 90 * DAY, 0.5), nb + 45 * DAY);
  assert.equal(dueTime(nb, nb + 6 * DAY, 1 / 3), nb + 3 * DAY, 'short-lived: half-life, whatever the fraction');
  assert.equal(dueTime(nb, nb + 60_000, 0.33), nb + 30_000);
});

test('timing: jitter is deterministic per name, inside [due - window, due], and spreads names', () => {
  const nb = Date.parse('2026-01-01T00:00:00Z');
  const na = nb + 90 * DAY;
  const due = dueTime(nb, na, 0.33);
  const opts = { fraction: 0.33, jitterMs: 3_600_000 };
  const times = Array.from({ length: 200 }, (_, i) => renewalTime(`n${i}.example.com`, nb, na, opts));
  for (const t of times) assert.ok(t <= due && t >= due - 3_600_000);
  assert.equal(renewalTime('n7.example.com', nb, na, opts), times[7]);
  // 200 names over an hour: every 10-minute slice gets some, none gets most.
  const slices = new Array(6).fill(0);
  for (const t of times) slices[Math.min(5, Math.floor((due - t) / 600_000))]++;
  for (const n of slices) assert.ok(n > 10 && n < 70, `slices ${slices.join(',')}`);
  // The window never exceeds a tenth of a short lifetime.
  const short = renewalTime('x.example.com', nb, nb + 100_000, { fraction: 0.33, jitterMs: 3_600_000 });
  assert.ok(short >= nb + 50_000 - 10_000 && short <= nb + 50_000);
  assert.ok(unitHash('a') >= 0 && unitHash('a') < 1);
});

test('ari: cert ID of the RFC 9773 example, and from a real certificate with an AKI', async () => {
  // RFC 9773 appendix A: keyIdentifier 69:88:5B:...:D4, serial 00:87:65:43:21.
  const aki = Buffer.from('69885B6B87464041E1B37B847BA0AE2CDE01C8D4', 'hex');
  assert.equal(`${aki.toString('base64url')}.${serialDer('0087654321').toString('base64url')}`, 'aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE');
  assert.equal(serialDer('87654321').toString('hex'), '0087654321', 'high bit set: a leading zero');
  assert.equal(serialDer('7f').toString('hex'), '7f');

  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const ca = await x509.X509CertificateGenerator.createSelfSigned(
    { serialNumber: '01', name: 'CN=ari test CA', notBefore: new Date(), notAfter: new Date(Date.now() + DAY), keys, signingAlgorithm: alg,
      extensions: [await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, webcrypto)] },
    webcrypto,
  );
  const leaf = await x509.X509CertificateGenerator.create(
    { serialNumber: 'f00dcafe01', subject: 'CN=a.example.com', issuer: ca.subject, notBefore: new Date(), notAfter: new Date(Date.now() + DAY),
      publicKey: keys.publicKey, signingKey: keys.privateKey, signingAlgorithm: alg,
      extensions: [await x509.AuthorityKeyIdentifierExtension.create(ca, false, webcrypto)] },
    webcrypto,
  );
  const expectedAki = leaf.getExtension(x509.AuthorityKeyIdentifierExtension)!.keyId!;
  assert.equal(authorityKeyIdentifier(Buffer.from(leaf.rawData))!.toString('hex'), expectedAki.toLowerCase());
  assert.equal(ariCertId(leaf.toString('pem')), `${Buffer.from(expectedAki, 'hex').toString('base64url')}.${Buffer.from('00f00dcafe01', 'hex').toString('base64url')}`);
  assert.equal(ariCertId(ca.toString('pem')), undefined, 'no AKI, no cert ID');
});

test('ari: window picks and Retry-After bounds', () => {
  const now = 1_000_000_000;
  assert.equal(pickInWindow('a.test', { start: now - 2000, end: now - 1000 }, now), now, 'past window: now');
  const t = pickInWindow('a.test', { start: now + 1000, end: now + 100_000 }, now);
  assert.ok(t >= now + 1000 && t <= now + 100_000);
  assert.equal(pickInWindow('a.test', { start: now + 1000, end: now + 100_000 }, now), t, 'deterministic');
  assert.equal(nextFetchAt({ retryAfterMs: 7000 }, now), now + 7000);
  assert.equal(nextFetchAt({ retryAfterMs: 0 }, now), now + 1000, 'never hammer');
  assert.equal(nextFetchAt({}, now), now + 6 * 3_600_000, 'default 6 h');
  assert.equal(nextFetchAt({ retryAfterMs: 30 * DAY }, now), now + DAY, 'at most a day');
});

test('index: UTC hour buckets sort as strings; backoff 1 min, 10 min, 100 min, then daily', () => {
  assert.equal(hourBucket(Date.parse('2026-11-23T18:59:59.999Z')), '2026-11-23T18');
  assert.deepEqual(bucketsBetween('2026-11-23T22', '2026-11-24T01'), ['2026-11-23T22', '2026-11-23T23', '2026-11-24T00', '2026-11-24T01']);
  assert.deepEqual([1, 2, 3, 4, 9].map(renewalBackoffMs), [60_000, 600_000, 6_000_000, 86_400_000, 86_400_000]);
});
