// Reads the server name and ALPN list of a TLS ClientHello from the first bytes of a connection,
// before node:tls sees them (tls/early-refusal.ts). Only what a refusal needs, and only when sure:
//   1. one TLS record (RFC 8446 §5.1): type handshake (22), version 3.x, length ≤ 2^14; the
//      ClientHello (§4.1.2) must lie whole inside it (a ClientHello split over records is
//      `other`: node:tls handles it as always)
//   2. legacy_version, random, session id, cipher suites, compression methods, then extensions,
//      each length checked against what encloses it; any overrun → `other`
//   3. server_name (RFC 6066 §3): the first host_name entry, printable ASCII only, else `other`
//      (node:tls decides odd names as it always did); application_layer_protocol_negotiation
//      (RFC 7301 §3.1): the offered protocol names, as latin1
//   4. never throws, never reads past the buffer; `more` when the record is not all there yet
//      (at most 5 + 2^14 bytes are ever needed)

/** A record's largest plaintext body (RFC 8446 §5.1): a longer one is not a TLS record. */
const MAX_RECORD = 16_384;
/** Bytes of a record header: type, version, length. */
const RECORD_HEADER = 5;

/** What the first bytes of a connection say (see the header). */
export type ClientHelloPeek =
  | { kind: 'more' }
  | { kind: 'other' }
  | { kind: 'hello'; serverName: string | undefined; alpn: string[] | undefined };

/** The most bytes peekClientHello() ever needs before it answers something other than `more`. */
export const CLIENT_HELLO_MAX_BYTES = RECORD_HEADER + MAX_RECORD;

/** Steps 1-4 of the header, on the bytes received so far. */
export function peekClientHello(buf: Uint8Array): ClientHelloPeek {
  if (buf.length >= 1 && buf[0] !== 22) return OTHER;
  if (buf.length >= 2 && buf[1] !== 3) return OTHER;
  if (buf.length < RECORD_HEADER) return MORE;
  const recordLength = (buf[3]! << 8) | buf[4]!;
  if (recordLength > MAX_RECORD || recordLength < 4) return OTHER;
  if (buf.length < RECORD_HEADER + recordLength) return MORE;
  const end = RECORD_HEADER + recordLength;
  // Handshake header: msg_type client_hello (1), 24-bit length, inside this record.
  if (buf[5] !== 1) return OTHER;
  const helloEnd = 9 + ((buf[6]! << 16) | (buf[7]! << 8) | buf[8]!);
  if (helloEnd > end) return OTHER;
  return readHello(buf, 9, helloEnd);
}

const MORE: ClientHelloPeek = { kind: 'more' };
const OTHER: ClientHelloPeek = { kind: 'other' };

/** Step 2: the ClientHello body in buf[at, end). */
function readHello(buf: Uint8Array, at: number, end: number): ClientHelloPeek {
  let p = at + 2 + 32; // legacy_version, random
  if (p + 1 > end) return OTHER;
  p += 1 + buf[p]!; // legacy_session_id
  if (p + 2 > end) return OTHER;
  p += 2 + ((buf[p]! << 8) | buf[p + 1]!); // cipher_suites
  if (p + 1 > end) return OTHER;
  p += 1 + buf[p]!; // legacy_compression_methods
  if (p > end) return OTHER;
  if (p === end) return { kind: 'hello', serverName: undefined, alpn: undefined }; // no extensions
  if (p + 2 > end) return OTHER;
  const extensionsEnd = p + 2 + ((buf[p]! << 8) | buf[p + 1]!);
  if (extensionsEnd > end) return OTHER;
  return readExtensions(buf, p + 2, extensionsEnd);
}

/** Step 3: the extensions in buf[at, end). */
function readExtensions(buf: Uint8Array, at: number, end: number): ClientHelloPeek {
  let serverName: string | undefined;
  let alpn: string[] | undefined;
  let p = at;
  while (p < end) {
    if (p + 4 > end) return OTHER;
    const type = (buf[p]! << 8) | buf[p + 1]!;
    const dataEnd = p + 4 + ((buf[p + 2]! << 8) | buf[p + 3]!);
    if (dataEnd > end) return OTHER;
    if (type === 0) {
      const name = readServerName(buf, p + 4, dataEnd);
      if (name === undefined) return OTHER;
      serverName = name;
    } else if (type === 16) {
      const protocols = readAlpn(buf, p + 4, dataEnd);
      if (protocols === undefined) return OTHER;
      alpn = protocols;
    }
    p = dataEnd;
  }
  return { kind: 'hello', serverName, alpn };
}

/** server_name: the first host_name entry, printable ASCII; undefined when malformed or odd. */
function readServerName(buf: Uint8Array, at: number, end: number): string | undefined {
  if (at + 2 > end) return undefined;
  const listEnd = at + 2 + ((buf[at]! << 8) | buf[at + 1]!);
  if (listEnd > end) return undefined;
  let p = at + 2;
  while (p < listEnd) {
    if (p + 3 > listEnd) return undefined;
    const nameType = buf[p]!;
    const nameEnd = p + 3 + ((buf[p + 1]! << 8) | buf[p + 2]!);
    if (nameEnd > listEnd) return undefined;
    if (nameType === 0) {
      if (nameEnd === p + 3) return undefined;
      let name = '';
      for (let i = p + 3; i < nameEnd; i++) {
        const c = buf[i]!;
        if (c < 0x21 || c > 0x7e) return undefined;
        name += String.fromCharCode(c);
      }
      return name;
    }
    p = nameEnd;
  }
  return undefined;
}

/** application_layer_protocol_negotiation: the protocol names; undefined when malformed. */
function readAlpn(buf: Uint8Array, at: number, end: number): string[] | undefined {
  if (at + 2 > end) return undefined;
  const listEnd = at + 2 + ((buf[at]! << 8) | buf[at + 1]!);
  if (listEnd > end) return undefined;
  const out: string[] = [];
  let p = at + 2;
  while (p < listEnd) {
    const nameEnd = p + 1 + buf[p]!;
    if (nameEnd > listEnd || nameEnd === p + 1) return undefined;
    out.push(Buffer.from(buf.subarray(p + 1, nameEnd)).toString('latin1'));
    p = nameEnd;
  }
  return out;
}
