// JWS pieces ACME needs: RFC 7638 thumbprints, ES256 signatures with jwk or kid, base64url.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync, verify } from 'node:crypto';
import fc from 'fast-check';
import { base64url, dns01TxtValue, jwkThumbprint, signJws } from '../../../src/acme/plumbing/jws.ts';
import { generateAccountKey } from '../../../src/acme/x509.ts';

describe('JWS helpers', () => {
  test('RFC 7638 §3.1 thumbprint example', () => {
    const n =
      '0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw';
    const key = createPublicKey({ key: { kty: 'RSA', n, e: 'AQAB' }, format: 'jwk' });
    assert.equal(jwkThumbprint(key), 'NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs');
  });

  test('ES256 JWS verifies and carries jwk or kid', async () => {
    const key = generateAccountKey();
    const jws = signJws({ key, url: 'https://ca.test/new-acct', nonce: 'n1', payload: { a: 1 } });
    const header = JSON.parse(Buffer.from(jws.protected, 'base64url').toString()) as Record<string, unknown>;
    assert.equal(header.alg, 'ES256');
    assert.equal(header.nonce, 'n1');
    assert.equal(header.url, 'https://ca.test/new-acct');
    assert.ok(header.jwk && !('kid' in header));
    const sig = Buffer.from(jws.signature, 'base64url');
    assert.equal(sig.length, 64);
    assert.ok(
      verify('sha256', Buffer.from(`${jws.protected}.${jws.payload}`), { key: createPublicKey(key), dsaEncoding: 'ieee-p1363' }, sig),
    );
    const get = signJws({ key, url: 'https://ca.test/order/1', nonce: 'n2', kid: 'https://ca.test/acct/1' });
    assert.equal(get.payload, '', 'POST-as-GET has an empty payload');
    const h2 = JSON.parse(Buffer.from(get.protected, 'base64url').toString()) as Record<string, unknown>;
    assert.equal(h2.kid, 'https://ca.test/acct/1');
    assert.ok(!('jwk' in h2));
    assert.equal(base64url('hi?'), 'aGk_');
    assert.match(dns01TxtValue('token.thumb'), /^[A-Za-z0-9_-]{43}$/);
  });

  test('ES256/384/512 signatures are r || s of the curve size and verify, short r and s included (property)', () => {
    const curves = [
      { curve: 'P-256', alg: 'ES256', hash: 'sha256', size: 32 },
      { curve: 'P-384', alg: 'ES384', hash: 'sha384', size: 48 },
      { curve: 'P-521', alg: 'ES512', hash: 'sha512', size: 66 },
    ].map((c) => ({ ...c, ...generateKeyPairSync('ec', { namedCurve: c.curve }) }));
    let shortComponents = 0;
    fc.assert(
      fc.property(fc.constantFrom(...curves), fc.string({ maxLength: 200 }), fc.string({ minLength: 1, maxLength: 40 }), (c, text, nonce) => {
        const jws = signJws({ key: c.privateKey, url: 'https://ca.test/x', nonce, kid: 'https://ca.test/acct/1', payload: { text } });
        assert.equal((JSON.parse(Buffer.from(jws.protected, 'base64url').toString()) as { alg: string }).alg, c.alg);
        const sig = Buffer.from(jws.signature, 'base64url');
        assert.equal(sig.length, 2 * c.size);
        if (sig[0] === 0 || sig[c.size] === 0) shortComponents++;
        assert.ok(verify(c.hash, Buffer.from(`${jws.protected}.${jws.payload}`), { key: c.publicKey, dsaEncoding: 'ieee-p1363' }, sig));
      }),
      { seed: 42, numRuns: 600 },
    );
    assert.ok(shortComponents > 0, 'some r or s shorter than the curve size was padded');
  });
});
