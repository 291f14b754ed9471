// PROXY protocol headers (v1 text, v2 binary) written the way a balancer writes them, for tests:
// written independently of src/net/proxy-protocol.ts, so a round trip checks the parser.
import { connect, isIP } from 'node:net';
import { duplexPair } from 'node:stream';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';

export const V2_SIGNATURE = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');

export interface HeaderEndpoints {
  source: string;
  destination: string;
  sourcePort: number;
  destinationPort: number;
}

/** `PROXY TCP4|TCP6 src dst sport dport\r\n` (the family from the source address). */
export function proxyV1(e: HeaderEndpoints): Buffer {
  const proto = isIP(e.source) === 4 ? 'TCP4' : 'TCP6';
  return Buffer.from(`PROXY ${proto} ${e.source} ${e.destination} ${e.sourcePort} ${e.destinationPort}\r\n`, 'latin1');
}

/** A v2 PROXY header over TCP4/TCP6, with `tlvs` (raw bytes) after the addresses. */
export function proxyV2(e: HeaderEndpoints, tlvs: Buffer = Buffer.alloc(0)): Buffer {
  const v4 = isIP(e.source) === 4;
  const addresses = v4
    ? Buffer.concat([ipv4Bytes(e.source), ipv4Bytes(e.destination), port(e.sourcePort), port(e.destinationPort)])
    : Buffer.concat([ipv6Bytes(e.source), ipv6Bytes(e.destination), port(e.sourcePort), port(e.destinationPort)]);
  return v2Frame(0x21, v4 ? 0x11 : 0x21, Buffer.concat([addresses, tlvs]));
}

/** A v2 LOCAL header (what a balancer's health check sends), optionally with a block to skip. */
export function proxyV2Local(block: Buffer = Buffer.alloc(0)): Buffer {
  return v2Frame(0x20, 0x00, block);
}

/** The 16 fixed bytes of a v2 header (signature, version/command, family, length) plus `block`. */
export function v2Frame(versionCommand: number, family: number, block: Buffer): Buffer {
  const fixed = Buffer.alloc(4);
  fixed[0] = versionCommand;
  fixed[1] = family;
  fixed.writeUInt16BE(block.length, 2);
  return Buffer.concat([V2_SIGNATURE, fixed, block]);
}

function port(p: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(p);
  return b;
}

export function ipv4Bytes(text: string): Buffer {
  return Buffer.from(text.split('.').map(Number));
}

/** The 16 bytes of an IPv6 address in any RFC 4291 text form (`::`, an IPv4 tail). */
export function ipv6Bytes(text: string): Buffer {
  let head = text;
  const tail: number[] = [];
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(head);
  if (dotted) {
    const v4 = ipv4Bytes(dotted[1]!);
    tail.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
    head = head.slice(0, -dotted[1]!.length);
    if (head.endsWith(':') && !head.endsWith('::')) head = head.slice(0, -1);
  }
  const [left = '', right] = head.split('::');
  const parse = (s: string) => (s === '' ? [] : s.split(':').map((g) => parseInt(g, 16)));
  const l = parse(left);
  const r = [...(right === undefined ? [] : parse(right)), ...tail];
  const groups = right === undefined && head.indexOf('::') < 0 ? [...l, ...tail] : [...l, ...new Array<number>(8 - l.length - r.length).fill(0), ...r];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(g, i * 2));
  return out;
}

/** TLS over a TCP connection from `localAddress` whose first write is `header` + the ClientHello (one segment). */
export function tlsWithHeader(target: number, header: Buffer | null, localAddress = '127.0.0.1', servername = 'example.test', ca?: string): TLSSocket {
  const raw = connect({ host: '127.0.0.1', port: target, localAddress });
  const [inner, outer] = duplexPair();
  let first = header;
  outer.on('data', (chunk: Buffer) => {
    raw.write(first ? Buffer.concat([first, chunk]) : chunk);
    first = null;
  });
  raw.on('data', (chunk: Buffer) => outer.write(chunk));
  raw.on('end', () => outer.end());
  raw.on('close', () => {
    outer.destroy();
    inner.destroy();
  });
  raw.on('error', () => {});
  outer.on('error', () => {});
  return tlsConnect({ socket: inner, servername, ...(ca ? { ca } : { rejectUnauthorized: false }), ALPNProtocols: ['http/1.1'] });
}

