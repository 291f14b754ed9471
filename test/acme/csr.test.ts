// The PKCS#10 requests of src/acme/csr.ts (node:crypto + a minimal DER writer): what every
// order sends. Checked with two independent parsers (@peculiar/x509 and openssl), for random
// name lists (fast-check, fixed seed: lengths past the one- and two-byte DER length forms, IPv4
// and IPv6 identifiers, wildcards, names over 64 characters).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { KeyObject } from 'node:crypto';
import { isIP } from 'node:net';
import fc from 'fast-check';
import '../../src/acme/reflect-shim.ts';
import * as x509 from '@peculiar/x509';
import { createCsr, generateKeyPair, importKeyPair, type KeyType } from '../../src/acme/x509.ts';

const SAN_OID = '2.5.29.17';

function parsed(der: Uint8Array): { csr: x509.Pkcs10CertificateRequest; sans: [string, string][] } {
  const csr = new x509.Pkcs10CertificateRequest(der);
  const ext = csr.extensions.find((e) => e.type === SAN_OID);
  assert.ok(ext, 'no SAN extension');
  const sans = new x509.SubjectAlternativeNameExtension(ext.rawData).names.items.map((n): [string, string] => [n.type, n.value]);
  return { csr, sans };
}

/** The 16 bytes of an IPv6 literal as @peculiar/x509 prints them back (its own canonical form). */
function canonicalIp(ip: string): string {
  return isIP(ip) === 4 ? ip : new URL(`http://[${ip}]/`).hostname.slice(1, -1);
}

const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?$/);
const dnsName = fc.tuple(fc.boolean(), fc.array(label, { minLength: 2, maxLength: 6 })).map(([wild, labels]) => `${wild ? '*.' : ''}${labels.join('.')}`);
const ipv4 = fc.ipV4();
const ipv6 = fc.ipV6();
const identifiers = fc.array(fc.oneof({ weight: 8, arbitrary: dnsName }, { weight: 1, arbitrary: ipv4 }, { weight: 1, arbitrary: ipv6 }), { minLength: 1, maxLength: 40 });

describe('CSR (node:crypto, DER)', () => {
  test('certificate keys are node:crypto KeyObjects, generated and imported', async () => {
    const { privateKeyPem, keyPair } = await generateKeyPair('ecdsa-p256');
    assert.ok(keyPair.privateKey instanceof KeyObject && keyPair.privateKey.type === 'private');
    assert.ok(keyPair.publicKey instanceof KeyObject && keyPair.publicKey.type === 'public');
    const imported = importKeyPair(privateKeyPem);
    assert.ok(imported.privateKey instanceof KeyObject);
    assert.deepEqual(imported.publicKey.export({ type: 'spki', format: 'der' }), keyPair.publicKey.export({ type: 'spki', format: 'der' }));
  });

  test('random name lists: the request verifies and names exactly the identifiers, in order', async () => {
    const keys = { 'ecdsa-p256': await generateKeyPair('ecdsa-p256'), 'rsa-2048': await generateKeyPair('rsa-2048') };
    await fc.assert(
      fc.asyncProperty(identifiers, fc.constantFrom<KeyType>('ecdsa-p256', 'rsa-2048'), async (names, type) => {
        const { csr, sans } = parsed(createCsr(names, keys[type].keyPair, type));
        assert.ok(await csr.verify(), 'self-signature verifies');
        assert.deepEqual(
          sans,
          names.map((n) => (isIP(n) ? ['ip', canonicalIp(n)] : ['dns', n])),
        );
        assert.equal(csr.subject, names[0]!.length <= 64 ? `CN=${names[0]}` : '');
        assert.equal(csr.publicKey.algorithm.name, type === 'rsa-2048' ? 'RSASSA-PKCS1-v1_5' : 'ECDSA');
      }),
      { seed: 42, numRuns: 150 },
    );
  });

  test('openssl reads and verifies a request of 200 names (lengths in the two-byte long form)', async () => {
    const { keyPair } = await generateKeyPair('ecdsa-p256');
    const names = Array.from({ length: 200 }, (_, i) => `name-${i}-${'x'.repeat(60)}.certgate.test`);
    const der = createCsr(names, keyPair, 'ecdsa-p256');
    assert.ok(der.length > 0x2000);
    const text = execFileSync('openssl', ['req', '-inform', 'DER', '-noout', '-text', '-verify'], { input: der, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
    for (const n of [names[0]!, names[199]!]) assert.ok(text.includes(`DNS:${n}`), `openssl sees ${n}`);
    assert.ok(!/Subject: CN/.test(text), 'no CN: the first name is over 64 characters');
  });

  test('a key of another type than asked for is refused, naming the domain and the step', async () => {
    const { keyPair } = await generateKeyPair('ecdsa-p256');
    assert.throws(() => createCsr(['a.certgate.test'], keyPair, 'rsa-2048'), /a\.certgate\.test.*step: csr/);
  });
});
