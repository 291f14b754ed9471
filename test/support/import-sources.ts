// Sources for `certgate import` tests: certificates with chosen names and dates (cheap: one key
// pair may sign many), and lua-resty-auto-ssl's Redis values written as its storage does.
import { webcrypto } from 'node:crypto';
import '../../src/acme/reflect-shim.ts';
import * as x509 from '@peculiar/x509';
import { createClient } from 'redis';

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };

/** A key pair for testCertificate (PKCS#8 PEM of its private key included). */
export interface TestKeys {
  pair: webcrypto.CryptoKeyPair;
  keyPem: string;
}

/** A fresh ECDSA P-256 key pair. */
export async function testKeys(): Promise<TestKeys> {
  const pair = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', pair.privateKey)).toString('base64');
  return { pair, keyPem: `-----BEGIN PRIVATE KEY-----\n${pkcs8.replace(/.{1,64}/g, '$&\n')}-----END PRIVATE KEY-----\n` };
}

let serial = 1;

/** A self-signed certificate for `names` (SANs) with `keys`, valid from `notBefore` to `notAfter`. */
export async function testCertificate(names: string[], keys: TestKeys, notAfter: Date, notBefore = new Date(Date.now() - 3_600_000)): Promise<string> {
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: (serial++).toString(16).padStart(8, '0'),
      name: `CN=${names[0]}`,
      notBefore,
      notAfter,
      keys: keys.pair,
      signingAlgorithm: ALG,
      extensions: [new x509.SubjectAlternativeNameExtension(names.map((value) => ({ type: 'dns' as const, value })))],
    },
    webcrypto,
  );
  return cert.toString('pem') + '\n';
}

/** The JSON lua-resty-auto-ssl's storage.lua set_cert() stores under `<domain>:latest`. */
export function autoSslValue(fullchainPem: string, privkeyPem: string, expiry: Date): string {
  return JSON.stringify({ fullchain_pem: fullchainPem, privkey_pem: privkeyPem, cert_pem: fullchainPem, expiry: Math.floor(expiry.getTime() / 1000) });
}

/** Writes `entries` (Redis key → value) with MSET, a thousand at a time. */
export async function writeRedisKeys(url: string, entries: Iterable<[string, string]>): Promise<void> {
  const client = createClient({ url });
  await client.connect();
  try {
    let batch: string[] = [];
    const flush = async () => {
      if (batch.length > 0) await client.sendCommand(['MSET', ...batch]);
      batch = [];
    };
    for (const [k, v] of entries) {
      batch.push(k, v);
      if (batch.length >= 2_000) await flush();
    }
    await flush();
  } finally {
    await client.close();
  }
}
