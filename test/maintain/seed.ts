// Certificates with chosen validity, signed by a throwaway local CA, for renewal tests: stored
// through saveCertificate, exactly as an issued certificate would be (and so indexed).
import { webcrypto } from 'node:crypto';
import '../../src/acme/reflect-shim.ts';
import * as x509 from '@peculiar/x509';
import { saveCertificate } from '../../src/issuance/store.ts';
import type { Storage } from '../../src/storage/storage.ts';

function toPem(der: ArrayBuffer, label: string): string {
  return `-----BEGIN ${label}-----\n${Buffer.from(der).toString('base64').replace(/.{1,64}/g, '$&\n')}-----END ${label}-----\n`;
}

export interface SeedOptions {
  storage: Storage;
  ca: string;
  directory: string;
  domains: string[];
  notBefore: Date;
  notAfter: Date;
}

/** Stores one certificate per domain (one shared key pair, for speed); returns their fingerprints. */
export async function seedCertificates(opts: SeedOptions): Promise<Map<string, string>> {
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const caKeys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const ca = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: '01',
      name: 'CN=certgate renewal test seed CA',
      notBefore: opts.notBefore,
      notAfter: opts.notAfter,
      keys: caKeys,
      signingAlgorithm: alg,
      extensions: [new x509.BasicConstraintsExtension(true, 0, true), await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey, false, webcrypto)],
    },
    webcrypto,
  );
  const leafKeys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const keyPem = toPem(await webcrypto.subtle.exportKey('pkcs8', leafKeys.privateKey), 'PRIVATE KEY');
  const out = new Map<string, string>();
  let serial = 0x100;
  for (const domain of opts.domains) {
    const leaf = await x509.X509CertificateGenerator.create(
      {
        serialNumber: (serial++).toString(16),
        subject: `CN=${domain}`,
        issuer: ca.subject,
        notBefore: opts.notBefore,
        notAfter: opts.notAfter,
        publicKey: leafKeys.publicKey,
        signingKey: caKeys.privateKey,
        signingAlgorithm: alg,
        extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: domain }]), await x509.AuthorityKeyIdentifierExtension.create(ca, false, webcrypto)],
      },
      webcrypto,
    );
    const certPem = `${leaf.toString('pem')}\n${ca.toString('pem')}\n`;
    const saved = await saveCertificate(opts.storage, { domain, ca: opts.ca, directory: opts.directory, certPem, keyPem, keyType: 'ecdsa-p256' });
    out.set(domain, saved.fingerprint256);
  }
  return out;
}
