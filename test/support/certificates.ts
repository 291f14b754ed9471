// Certificates for unit tests that need several names in one certificate (managed certificates).
import { webcrypto } from 'node:crypto';
import '../../src/acme/reflect-shim.ts';
import * as x509 from '@peculiar/x509';

/** A self-signed certificate naming every one of `names` (SANs), with its key. */
export async function multiNameCertificate(names: string[]): Promise<{ certPem: string; keyPem: string; notAfter: Date }> {
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const notAfter = new Date(Date.now() + 30 * 86_400_000);
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: '0a',
      name: `CN=${names[0]}`,
      notBefore: new Date(Date.now() - 60_000),
      notAfter,
      keys,
      signingAlgorithm: alg,
      extensions: [new x509.SubjectAlternativeNameExtension(names.map((value) => ({ type: 'dns' as const, value })))],
    },
    webcrypto,
  );
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)).toString('base64');
  return { certPem: cert.toString('pem') + '\n', keyPem: `-----BEGIN PRIVATE KEY-----\n${pkcs8.replace(/.{1,64}/g, '$&\n')}-----END PRIVATE KEY-----\n`, notAfter };
}
