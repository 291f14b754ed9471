// ARI (RFC 9773) without a CA: certificate IDs (the RFC's example and a generated certificate),
// window picks and Retry-After bounds. Asking a CA: test/maintain/acme-proxy.test.ts and
// test/acme/issuer.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { webcrypto } from 'node:crypto';
import '../../../src/acme/reflect-shim.ts';
import * as x509 from '@peculiar/x509';
import { ariCertId, authorityKeyIdentifier, nextFetchAt, pickInWindow, serialDer } from '../../../src/acme/plumbing/ari.ts';

const DAY = 86_400_000;

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
