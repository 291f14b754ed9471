import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createPrivateKey, X509Certificate } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import '../../src/acme/reflect-shim.ts';
import * as x509 from '@peculiar/x509';
import {
  ACME_IDENTIFIER_OID,
  createCsr,
  createSelfSignedCertificate,
  createTlsAlpnCertificate,
  generateAccountKey,
  generateKeyPair,
  importKeyPair,
  keyTypeOf,
  parseCertificate,
  splitPemChain,
  type KeyType,
} from '../../src/acme/x509.ts';

const SAN_OID = '2.5.29.17';

function sanOf(item: { extensions: x509.Extension[] }): x509.SubjectAlternativeNameExtension {
  const ext = item.extensions.find((e) => e.type === SAN_OID);
  assert.ok(ext, 'no SAN extension');
  return new x509.SubjectAlternativeNameExtension(ext.rawData);
}

function sanValues(item: { extensions: x509.Extension[] }): string[] {
  return sanOf(item).names.items.map((n) => n.value);
}

describe('certificate keys', () => {
  for (const type of ['ecdsa-p256', 'rsa-2048'] as KeyType[]) {
    test(`${type}: PKCS#8 PEM, usable for a CSR with every SAN`, async () => {
      const { privateKeyPem, keyPair } = await generateKeyPair(type);
      assert.match(privateKeyPem, /^-----BEGIN PRIVATE KEY-----\n/);
      const key = createPrivateKey(privateKeyPem);
      if (type === 'rsa-2048') {
        assert.equal(key.asymmetricKeyType, 'rsa');
        assert.equal(key.asymmetricKeyDetails?.modulusLength, 2048);
      } else {
        assert.equal(key.asymmetricKeyType, 'ec');
        assert.equal(key.asymmetricKeyDetails?.namedCurve, 'prime256v1');
      }
      assert.equal(keyTypeOf(privateKeyPem), type);

      const domains = ['a.certgate.test', 'b.certgate.test', 'www.c.certgate.test'];
      const der = createCsr(domains, keyPair, type);
      const csr = new x509.Pkcs10CertificateRequest(der);
      assert.ok(await csr.verify(), 'CSR self-signature verifies');
      assert.equal(csr.subject, 'CN=a.certgate.test');
      assert.deepEqual(sanValues(csr), domains);
      assert.equal(csr.publicKey.algorithm.name, type === 'rsa-2048' ? 'RSASSA-PKCS1-v1_5' : 'ECDSA');

      // openssl agrees
      const dir = mkdtempSync(join(tmpdir(), 'certgate-csr-'));
      try {
        writeFileSync(join(dir, 'req.der'), der);
        const text = execFileSync('openssl', ['req', '-inform', 'DER', '-in', join(dir, 'req.der'), '-noout', '-text', '-verify'], {
          encoding: 'utf8',
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        for (const d of domains) assert.ok(text.includes(`DNS:${d}`), `openssl sees ${d}`);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }

      // the PEM round-trips into a key pair that signs CSRs for the same public key
      const imported = importKeyPair(privateKeyPem);
      const csr2 = new x509.Pkcs10CertificateRequest(createCsr(['d.certgate.test'], imported, type));
      assert.ok(await csr2.verify());
      assert.deepEqual(
        Buffer.from(csr2.publicKey.rawData).toString('hex'),
        Buffer.from(csr.publicKey.rawData).toString('hex'),
      );
    });
  }

  test('a CSR with an IP identifier and an over-long first name', async () => {
    const { keyPair } = await generateKeyPair('ecdsa-p256');
    const long = `${'x'.repeat(60)}.certgate.test`;
    const csr = new x509.Pkcs10CertificateRequest(createCsr([long, '127.0.0.1'], keyPair, 'ecdsa-p256'));
    assert.equal(csr.subject, '', 'no CN when the name exceeds 64 characters');
    assert.deepEqual(
      sanOf(csr).names.items.map((n) => [n.type, n.value]),
      [
        ['dns', long],
        ['ip', '127.0.0.1'],
      ],
    );
  });

  test('account keys are ECDSA P-256', () => {
    const key = generateAccountKey();
    assert.equal(key.type, 'private');
    assert.equal(key.asymmetricKeyType, 'ec');
    assert.equal(key.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    assert.match(String(key.export({ type: 'pkcs8', format: 'pem' })), /BEGIN PRIVATE KEY/);
  });
});

describe('certificates', () => {
  test('tls-alpn-01 certificate: SAN and critical acmeIdentifier with SHA-256(keyAuthorization)', async () => {
    const keyAuth = 'evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI';
    const { certPem, keyPem } = await createTlsAlpnCertificate('alpn.certgate.test', keyAuth);
    assert.match(keyPem, /^-----BEGIN PRIVATE KEY-----\n/);
    const cert = new x509.X509Certificate(certPem);
    const ext = cert.getExtension(ACME_IDENTIFIER_OID);
    assert.ok(ext, 'acmeIdentifier extension present');
    assert.equal(ext.critical, true);
    const digest = createHash('sha256').update(keyAuth).digest();
    assert.equal(Buffer.from(ext.value).toString('hex'), `0420${digest.toString('hex')}`, 'DER OCTET STRING of the digest');
    assert.deepEqual(sanValues(cert), ['alpn.certgate.test']);
    assert.ok(await cert.verify({ signatureOnly: true }), 'self-signed');
    const node = new X509Certificate(certPem);
    assert.ok(node.checkPrivateKey(createPrivateKey(keyPem)));
    assert.equal(node.checkHost('alpn.certgate.test'), 'alpn.certgate.test');
  });

  test('self-signed fallback certificate', async () => {
    const { certPem, keyPem } = await createSelfSignedCertificate('fallback.certgate.test', { days: 30 });
    const node = new X509Certificate(certPem);
    assert.ok(node.checkPrivateKey(createPrivateKey(keyPem)));
    assert.equal(createPrivateKey(keyPem).asymmetricKeyDetails?.namedCurve, 'prime256v1');
    assert.ok(node.verify(node.publicKey));
    assert.equal(node.ca, false);
    const parsed = parseCertificate(certPem);
    assert.deepEqual(parsed.names, ['fallback.certgate.test']);
    const days = (parsed.notAfter.getTime() - Date.now()) / 86_400_000;
    assert.ok(days > 29.9 && days <= 30, `~30 days (${days})`);
    assert.ok(parsed.notBefore.getTime() <= Date.now());
    assert.equal(parsed.serialNumber, node.serialNumber.toLowerCase());
    assert.equal(parsed.fingerprint256, node.fingerprint256);

    const defaulted = parseCertificate((await createSelfSignedCertificate('certgate fallback')).certPem);
    assert.deepEqual(defaulted.names, ['certgate fallback'], 'CN when the name is not a hostname (no SAN)');
    assert.ok(defaulted.notAfter.getTime() - Date.now() > 364 * 86_400_000);
  });

  test('parseCertificate reads the leaf of a chain', async () => {
    const leaf = await createSelfSignedCertificate('leaf.certgate.test');
    const other = await createSelfSignedCertificate('other.certgate.test');
    const chain = leaf.certPem + other.certPem;
    assert.equal(splitPemChain(chain).length, 2);
    assert.deepEqual(parseCertificate(chain).names, ['leaf.certgate.test']);
    assert.throws(() => parseCertificate('not a certificate'));
  });
});
