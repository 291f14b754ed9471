// PKCS#10 certificate requests (RFC 2986) built with node:crypto and a minimal DER writer, the
// one thing an order needs from X.509 tooling. Building it with @peculiar/x509 (WebCrypto, ASN.1
// schemas) cost ~3.5 ms of CPU per order and ~0.3 s to load per process; this is ~0.1 ms.
//   1. the subject: CN = the first name when it fits (≤ 64 characters), else empty
//   2. the key: its SubjectPublicKeyInfo as node:crypto exports it
//   3. one attribute, extensionRequest, holding the subjectAltName: dNSName per name, iPAddress
//      for an IP address
//   4. the request info signed with the key (ECDSA: DER signature; RSA: PKCS#1 v1.5, SHA-256)
import { createPublicKey, sign, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';

const OID = {
  commonName: '2.5.4.3',
  extensionRequest: '1.2.840.113549.1.9.14',
  subjectAltName: '2.5.29.17',
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  sha256WithRsa: '1.2.840.113549.1.1.11',
} as const;

/** DER tag bytes used here. */
const TAG = {
  integer: 0x02,
  bitString: 0x03,
  octetString: 0x04,
  null: 0x05,
  oid: 0x06,
  utf8String: 0x0c,
  printableString: 0x13,
  sequence: 0x30,
  set: 0x31,
  attributes: 0xa0, // [0] IMPLICIT SET OF Attribute
  dnsName: 0x82, // GeneralName [2] IMPLICIT IA5String
  ipAddress: 0x87, // GeneralName [7] IMPLICIT OCTET STRING
} as const;

/** One DER element: tag, definite length, contents. */
function tlv(tag: number, ...contents: Buffer[]): Buffer {
  const body = contents.length === 1 ? contents[0]! : Buffer.concat(contents);
  const n = body.length;
  let head: Buffer;
  if (n < 0x80) head = Buffer.from([tag, n]);
  else if (n < 0x100) head = Buffer.from([tag, 0x81, n]);
  else if (n < 0x10000) head = Buffer.from([tag, 0x82, n >> 8, n & 0xff]);
  else head = Buffer.from([tag, 0x83, n >> 16, (n >> 8) & 0xff, n & 0xff]);
  return Buffer.concat([head, body]);
}

function oid(dotted: string): Buffer {
  const arcs = dotted.split('.').map(Number);
  const bytes = [40 * arcs[0]! + arcs[1]!];
  for (const arc of arcs.slice(2)) {
    const base128 = [arc & 0x7f];
    for (let v = arc >>> 7; v > 0; v >>>= 7) base128.unshift((v & 0x7f) | 0x80);
    bytes.push(...base128);
  }
  return tlv(TAG.oid, Buffer.from(bytes));
}

/** PrintableString when every character allows it (as @peculiar/x509 wrote it), else UTF8String. */
function directoryString(text: string): Buffer {
  const printable = /^[A-Za-z0-9 '()+,\-./:=?]*$/.test(text);
  return tlv(printable ? TAG.printableString : TAG.utf8String, Buffer.from(text, 'utf8'));
}

/** The 4- or 16-byte form of an IP address literal. */
function ipBytes(ip: string): Buffer {
  if (isIP(ip) === 4) return Buffer.from(ip.split('.').map(Number));
  const [head = '', tail] = ip.split('::') as [string, string | undefined];
  // An embedded IPv4 tail (`::ffff:192.0.2.1`) is two groups.
  const groups = (s: string): number[] =>
    s ? s.split(':').flatMap((g) => (g.includes('.') ? [...ipBytes(g)].flatMap((b, i, a) => (i % 2 ? [] : [(b << 8) | a[i + 1]!])) : [parseInt(g, 16)])) : [];
  const h = groups(head);
  const t = tail === undefined ? [] : groups(tail);
  const all = tail === undefined ? h : [...h, ...Array<number>(8 - h.length - t.length).fill(0), ...t];
  const out = Buffer.alloc(16);
  all.forEach((g, i) => out.writeUInt16BE(g, 2 * i));
  return out;
}

function subjectAltName(names: string[]): Buffer {
  const general = names.map((n) => (isIP(n) ? tlv(TAG.ipAddress, ipBytes(n)) : tlv(TAG.dnsName, Buffer.from(n, 'ascii'))));
  return tlv(TAG.sequence, ...general);
}

/**
 * A DER PKCS#10 request for `names` signed with `privateKey` (ECDSA P-256 or RSA; SHA-256): see
 * the header for its content. Synchronous and cheap; `publicKey` defaults to the private key's.
 */
export function buildCsr(names: string[], privateKey: KeyObject, publicKey: KeyObject = createPublicKey(privateKey)): Buffer {
  const first = names[0];
  if (first === undefined) throw new Error('createCsr: no domains (step: csr)');
  const ecdsa = privateKey.asymmetricKeyType === 'ec';
  if (!ecdsa && privateKey.asymmetricKeyType !== 'rsa') throw new Error(`${first}: unsupported certificate key ${String(privateKey.asymmetricKeyType)} (step: csr)`);
  const subject = first.length <= 64 ? tlv(TAG.sequence, tlv(TAG.set, tlv(TAG.sequence, oid(OID.commonName), directoryString(first)))) : tlv(TAG.sequence);
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const extensions = tlv(TAG.sequence, tlv(TAG.sequence, oid(OID.subjectAltName), tlv(TAG.octetString, subjectAltName(names))));
  const attributes = tlv(TAG.attributes, tlv(TAG.sequence, oid(OID.extensionRequest), tlv(TAG.set, extensions)));
  const info = tlv(TAG.sequence, tlv(TAG.integer, Buffer.from([0])), subject, spki, attributes);
  const algorithm = ecdsa ? tlv(TAG.sequence, oid(OID.ecdsaWithSha256)) : tlv(TAG.sequence, oid(OID.sha256WithRsa), tlv(TAG.null, Buffer.alloc(0)));
  // node:crypto's ECDSA signature is already the DER SEQUENCE { r, s } X.509 wants.
  const signature = sign('sha256', info, privateKey);
  return tlv(TAG.sequence, info, algorithm, tlv(TAG.bitString, Buffer.from([0]), signature));
}
