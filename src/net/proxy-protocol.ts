// The PROXY protocol header (HAProxy's spec, versions 1 and 2) an L4 balancer sends first on a
// connection to say who the client is. Pure parsing, no sockets (src/net/proxy-protocol-listener.ts
// reads it off the connections).
//
//   1. the first bytes pick the version: "PROXY " is v1 (text), the 12-byte signature is v2
//      (binary); anything else is not a PROXY header. A prefix of either asks for more bytes
//   2. v1: one line of at most 107 bytes ending in CRLF: `PROXY TCP4|TCP6 src dst sport dport`,
//      or `PROXY UNKNOWN ...` (keep the connection's own peer)
//   3. v2: 16 bytes (signature, version 2, command, family, length) then `length` bytes of
//      addresses and TLVs; LOCAL (a balancer's health check) and family UNSPEC keep the peer;
//      PROXY over TCP4/TCP6 gives the addresses; TLVs are skipped; UDP and unix are refused;
//      a length over MAX_V2_LENGTH is refused (a real header is tens of bytes, a few hundred
//      with TLVs), so a sender cannot make the reader buffer 64 KiB
// Never throws: every input parses, asks for more, or is refused with a reason.
import { isIP } from 'node:net';

/** Longest v1 header, CRLF included (the spec's bound). */
export const MAX_V1_LENGTH = 107;
/** Longest v2 address-and-TLV block accepted (the 16-byte fixed part comes on top). */
export const MAX_V2_LENGTH = 2048;

const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const PORT = /^(?:0|[1-9]\d{0,4})$/;

/** An endpoint a PROXY header names. */
export interface ProxyEndpoint {
  address: string;
  port: number;
}

/**
 * What a complete header says: `proxy` carries the client (`source`) and the address it
 * connected to (`destination`); `local` (v2 LOCAL, v2 UNSPEC, v1 UNKNOWN) means the balancer
 * speaks for itself, so the connection's own peer address stays the client.
 */
export type ProxyHeader =
  | { command: 'proxy'; version: 1 | 2; source: ProxyEndpoint; destination: ProxyEndpoint }
  | { command: 'local'; version: 1 | 2 };

/**
 * parseProxyHeader's answer: `done` with the header and its length in bytes (what follows is
 * the client's data), `more` (a valid beginning; read on), or `invalid` with the reason.
 */
export type ProxyParse =
  | { status: 'done'; header: ProxyHeader; length: number }
  | { status: 'more' }
  | { status: 'invalid'; reason: string };

/** Parses the PROXY header at the start of `buf` (see the header comment); never throws. */
export function parseProxyHeader(buf: Uint8Array): ProxyParse {
  const bytes = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (startsWith(bytes, V2_SIGNATURE)) return bytes.length < V2_SIGNATURE.length ? MORE : parseV2(bytes);
  if (startsWith(bytes, V1_PREFIX)) return bytes.length < V1_PREFIX.length ? MORE : parseV1(bytes);
  return invalid('not a PROXY protocol header');
}

const MORE: ProxyParse = { status: 'more' };

function invalid(reason: string): ProxyParse {
  return { status: 'invalid', reason };
}

/** True when `bytes` and `prefix` agree on their common length (a short `bytes` may still become it). */
function startsWith(bytes: Buffer, prefix: Buffer): boolean {
  const n = Math.min(bytes.length, prefix.length);
  return bytes.subarray(0, n).equals(prefix.subarray(0, n));
}

/** Step 2. */
function parseV1(bytes: Buffer): ProxyParse {
  const window = bytes.subarray(0, MAX_V1_LENGTH);
  const end = window.indexOf('\r\n', 0, 'latin1');
  if (end < 0) return bytes.length >= MAX_V1_LENGTH ? invalid(`v1 header longer than ${MAX_V1_LENGTH} bytes`) : MORE;
  const line = window.subarray(0, end).toString('latin1');
  const length = end + 2;
  const parts = line.split(' ');
  if (parts[1] === 'UNKNOWN') return { status: 'done', header: { command: 'local', version: 1 }, length };
  if (parts.length !== 6) return invalid('v1 header is not "PROXY TCP4|TCP6 source destination sport dport"');
  const [, proto, src = '', dst = '', sport = '', dport = ''] = parts;
  const family = proto === 'TCP4' ? 4 : proto === 'TCP6' ? 6 : 0;
  if (family === 0) return invalid(`v1 protocol ${JSON.stringify(proto)?.slice(0, 20)} is not TCP4, TCP6 or UNKNOWN`);
  if (isIP(src) !== family || isIP(dst) !== family) return invalid(`v1 addresses are not ${proto} addresses`);
  if (!PORT.test(sport) || !PORT.test(dport) || Number(sport) > 65535 || Number(dport) > 65535) return invalid('v1 ports are not numbers 0-65535');
  return {
    status: 'done',
    header: { command: 'proxy', version: 1, source: { address: src, port: Number(sport) }, destination: { address: dst, port: Number(dport) } },
    length,
  };
}

/** Step 3. */
function parseV2(bytes: Buffer): ProxyParse {
  if (bytes.length < 16) return MORE;
  const versionCommand = bytes[12]!;
  if (versionCommand >> 4 !== 2) return invalid(`v2 version ${versionCommand >> 4} is not 2`);
  const command = versionCommand & 0x0f;
  if (command > 1) return invalid(`v2 command ${command} is neither LOCAL nor PROXY`);
  const family = bytes[13]!;
  const blockLength = bytes.readUInt16BE(14);
  if (blockLength > MAX_V2_LENGTH) return invalid(`v2 header length ${blockLength} is over ${MAX_V2_LENGTH}`);
  const length = 16 + blockLength;
  if (bytes.length < length) return MORE;
  if (command === 0 || family === 0x00) return { status: 'done', header: { command: 'local', version: 2 }, length };
  const block = bytes.subarray(16, length);
  if (family === 0x11) {
    if (blockLength < 12) return invalid('v2 TCP4 header shorter than its addresses');
    return done(ipv4(block.subarray(0, 4)), ipv4(block.subarray(4, 8)), block.readUInt16BE(8), block.readUInt16BE(10), length);
  }
  if (family === 0x21) {
    if (blockLength < 36) return invalid('v2 TCP6 header shorter than its addresses');
    return done(ipv6(block.subarray(0, 16)), ipv6(block.subarray(16, 32)), block.readUInt16BE(32), block.readUInt16BE(34), length);
  }
  return invalid(`v2 family 0x${family.toString(16).padStart(2, '0')} is not TCP4 or TCP6`);
}

function done(src: string, dst: string, sport: number, dport: number, length: number): ProxyParse {
  return { status: 'done', header: { command: 'proxy', version: 2, source: { address: src, port: sport }, destination: { address: dst, port: dport } }, length };
}

function ipv4(b: Buffer): string {
  return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
}

/** RFC 5952 text (lower case, the longest run of two or more zero groups as '::'), exactly as Node prints peers. */
function ipv6(b: Buffer): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i));
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) return `::ffff:${ipv4(b.subarray(12, 16))}`;
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) [bestStart, bestLength] = [i, j - i];
    i = j;
  }
  // libuv's forms (Node's remoteAddress) for a zero run of exactly the first six groups: '::a.b.c.d'.
  if (bestStart === 0 && bestLength === 6) return `::${ipv4(b.subarray(12, 16))}`;
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLength).join(':')}`;
}
