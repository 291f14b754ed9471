// Keys, CSRs and small certificates: certificate keys (ECDSA P-256 / RSA 2048) and PKCS#10
// requests on node:crypto (csr.ts; an order's CPU), self-signed certificates (fallback,
// tls-alpn-01) with @peculiar/x509 on WebCrypto, parsing with node:crypto.
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPair as generateNodeKeyPair,
  generateKeyPairSync,
  randomBytes,
  webcrypto,
  X509Certificate,
  type KeyObject,
} from 'node:crypto';
import { isIP } from 'node:net';
import { promisify } from 'node:util';
import type * as X509 from '@peculiar/x509';
import { commonJsExports } from '../util/commonjs.ts';
import { buildCsr } from './csr.ts';

// @peculiar/x509's typings use the DOM's Crypto; node's webcrypto is the same API.
const crypto = webcrypto as unknown as Parameters<typeof X509.X509CertificateGenerator.createSelfSigned>[1];

let x509Loaded: Promise<typeof X509> | undefined;
/**
 * @peculiar/x509 (with its Reflect polyfill) takes a few hundred ms to load: only issuance and
 * fallback generation need it, so serving stored certificates never pays for it at start-up.
 */
function loadX509(): Promise<typeof X509> {
  x509Loaded ??= (async () => {
    await import('./reflect-shim.ts');
    const x509 = commonJsExports(await import('@peculiar/x509'));
    x509.cryptoProvider.set(crypto);
    return x509;
  })();
  return x509Loaded;
}
const subtle = webcrypto.subtle;

/** Certificate key types (`acme.keyType`); account keys are always ECDSA P-256. */
export type KeyType = 'ecdsa-p256' | 'rsa-2048';
/** A WebCrypto key pair (what @peculiar/x509 signs with). */
export type CryptoKeyPair = webcrypto.CryptoKeyPair;
/** A certificate key pair as node:crypto KeyObjects (what createCsr signs with). */
export interface CertificateKeyPair {
  privateKey: KeyObject;
  publicKey: KeyObject;
}
const generateNodeKeyPairAsync = promisify(generateNodeKeyPair);

/** OID of the id-pe-acmeIdentifier extension (RFC 8737 §3). */
export const ACME_IDENTIFIER_OID = '1.3.6.1.5.5.7.1.31';

const ALGORITHMS = {
  'ecdsa-p256': {
    generate: { name: 'ECDSA', namedCurve: 'P-256' },
    sign: { name: 'ECDSA', hash: 'SHA-256' },
  },
  'rsa-2048': {
    generate: { name: 'RSASSA-PKCS1-v1_5', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' },
    sign: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' },
  },
} as const;

function toPem(der: ArrayBuffer | Uint8Array, label: string): string {
  const b64 = Buffer.from(der instanceof Uint8Array ? der : new Uint8Array(der)).toString('base64');
  return `-----BEGIN ${label}-----\n${b64.replace(/.{1,64}/g, '$&\n')}-----END ${label}-----\n`;
}

function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) | 0x01; // positive, no leading zero byte
  return bytes.toString('hex');
}

/**
 * A new certificate key pair and its private key as PKCS#8 PEM. Generated on libuv's thread pool
 * (node:crypto), so an RSA key does not block the event loop.
 */
export async function generateKeyPair(type: KeyType): Promise<{ privateKeyPem: string; keyPair: CertificateKeyPair }> {
  const keyPair =
    type === 'ecdsa-p256'
      ? await generateNodeKeyPairAsync('ec', { namedCurve: 'P-256' })
      : type === 'rsa-2048'
        ? await generateNodeKeyPairAsync('rsa', { modulusLength: 2048, publicExponent: 0x10001 })
        : undefined;
  if (!keyPair) throw new Error(`unsupported key type ${String(type)}`);
  return { privateKeyPem: String(keyPair.privateKey.export({ type: 'pkcs8', format: 'pem' })), keyPair };
}

/** A WebCrypto key pair for @peculiar/x509 (self-signed certificates only). */
async function generateCryptoKeyPair(type: KeyType): Promise<{ privateKeyPem: string; keyPair: CryptoKeyPair }> {
  const alg = ALGORITHMS[type];
  const keyPair = (await subtle.generateKey(alg.generate, true, ['sign', 'verify'])) as CryptoKeyPair;
  const privateKeyPem = toPem(await subtle.exportKey('pkcs8', keyPair.privateKey), 'PRIVATE KEY');
  return { privateKeyPem, keyPair };
}

/** The KeyType of a private key (PEM or KeyObject), or null if it is neither ECDSA P-256 nor RSA. */
export function keyTypeOf(key: string | KeyObject): KeyType | null {
  const k = typeof key === 'string' ? createPrivateKey(key) : key;
  if (k.asymmetricKeyType === 'ec' && k.asymmetricKeyDetails?.namedCurve === 'prime256v1') return 'ecdsa-p256';
  if (k.asymmetricKeyType === 'rsa') return 'rsa-2048';
  return null;
}

/** The key pair of a private key PEM (PKCS#8, SEC1 or PKCS#1), for createCsr. */
export function importKeyPair(privateKeyPem: string): CertificateKeyPair {
  const privateKey = createPrivateKey(privateKeyPem);
  if (!keyTypeOf(privateKey)) throw new Error(`unsupported private key (${String(privateKey.asymmetricKeyType)})`);
  return { privateKey, publicKey: createPublicKey(privateKey) };
}

function generalName(name: string): X509.JsonGeneralName {
  return isIP(name) ? { type: 'ip', value: name } : { type: 'dns', value: name };
}

/**
 * A DER PKCS#10 CSR: SAN entry for every domain (dNSName, or iPAddress), CN = first domain when
 * ≤ 64 chars, signed with SHA-256 (csr.ts). `type` must be the key's type.
 */
export function createCsr(domains: string[], keyPair: CertificateKeyPair, type: KeyType): Uint8Array {
  if (keyTypeOf(keyPair.privateKey) !== type) throw new Error(`createCsr: the key is not ${type} (domain ${domains[0] ?? '?'}, step: csr)`);
  return buildCsr(domains, keyPair.privateKey, keyPair.publicKey);
}

async function selfSigned(
  commonName: string,
  sanNames: string[],
  days: number,
  extra: X509.Extension[],
): Promise<{ certPem: string; keyPem: string }> {
  const x509 = await loadX509();
  const { privateKeyPem, keyPair } = await generateCryptoKeyPair('ecdsa-p256');
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: randomSerial(),
      name: [{ CN: [commonName] }],
      notBefore: new Date(now - 3600_000),
      notAfter: new Date(now + days * 86_400_000),
      keys: keyPair,
      signingAlgorithm: ALGORITHMS['ecdsa-p256'].sign,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
        ...(sanNames.length > 0 ? [new x509.SubjectAlternativeNameExtension(sanNames.map(generalName))] : []),
        ...extra,
      ],
    },
    crypto,
  );
  return { certPem: cert.toString('pem') + '\n', keyPem: privateKeyPem };
}

/**
 * The tls-alpn-01 validation certificate (RFC 8737 §3): self-signed, SAN = domain, critical
 * acmeIdentifier extension holding an ASN.1 OCTET STRING of SHA-256(keyAuthorization).
 */
export async function createTlsAlpnCertificate(
  domain: string,
  keyAuthorization: string,
): Promise<{ certPem: string; keyPem: string }> {
  const digest = createHash('sha256').update(keyAuthorization).digest();
  const value = Buffer.concat([Buffer.from([0x04, digest.length]), digest]); // DER OCTET STRING (32 bytes)
  const x509 = await loadX509();
  return selfSigned(domain, [domain], 7, [new x509.Extension(ACME_IDENTIFIER_OID, true, value)]);
}

/** A self-signed ECDSA P-256 server certificate (the gateway's fallback certificate). Default 365 days. */
export async function createSelfSignedCertificate(
  commonName: string,
  opts: { days?: number } = {},
): Promise<{ certPem: string; keyPem: string }> {
  const looksLikeName = isIP(commonName) !== 0 || /^[A-Za-z0-9*_.-]+$/.test(commonName);
  return selfSigned(commonName, looksLikeName ? [commonName] : [], opts.days ?? 365, []);
}

/** The PEM blocks of a chain, in order. */
export function splitPemChain(pem: string): string[] {
  return pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)?.map((b) => `${b}\n`) ?? [];
}

/** What the gateway needs to know of a certificate (see parseCertificate). */
export interface ParsedCertificate {
  notBefore: Date;
  notAfter: Date;
  /** SAN dNSName and iPAddress entries (falls back to the CN when there is no SAN). */
  names: string[];
  /** Lower-case hex, as Pebble's /cert-status-by-serial and `openssl x509 -serial` (lower-cased) spell it. */
  serialNumber: string;
  /** SHA-256 fingerprint, colon-separated upper-case hex (node:crypto's X509Certificate.fingerprint256). */
  fingerprint256: string;
}

/**
 * The DNS names and IP addresses of a subjectAltName text as node:crypto writes it
 * ('DNS:a.example, DNS:*.b.example, IP Address:127.0.0.1'), in order, as written (quotes removed).
 */
export function sanNames(subjectAltName: string | undefined): string[] {
  if (!subjectAltName) return [];
  const names: string[] = [];
  for (const part of subjectAltName.split(/,\s*/)) {
    const m = /^(DNS|IP Address):(.*)$/.exec(part.trim());
    if (m?.[2]) names.push(m[2].replace(/^"(.*)"$/, '$1'));
  }
  return names;
}

/** Facts about the leaf (first) certificate of a PEM chain. */
export function parseCertificate(pem: string): ParsedCertificate {
  const leaf = splitPemChain(pem)[0];
  if (!leaf) throw new Error('parseCertificate: no PEM certificate');
  const cert = new X509Certificate(leaf);
  let names = sanNames(cert.subjectAltName);
  if (names.length === 0) {
    const cn = /(?:^|\n)CN=([^\n]+)/.exec(cert.subject)?.[1];
    if (cn) names = [cn];
  }
  return {
    notBefore: cert.validFromDate,
    notAfter: cert.validToDate,
    names,
    serialNumber: cert.serialNumber.toLowerCase(),
    fingerprint256: cert.fingerprint256,
  };
}

/** A new ECDSA P-256 ACME account key. Store it with `key.export({ type: 'pkcs8', format: 'pem' })`. */
export function generateAccountKey(): KeyObject {
  return generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
}
