// TSIG (RFC 8945): signing a DNS message and verifying the signed answer, on node:crypto.
// dns-packet encodes and decodes the messages but knows nothing of TSIG, so this works on the
// wire bytes:
//
//   sign (request)
//     1. MAC = HMAC(secret, message as encoded ‖ TSIG variables)            (RFC 8945 4.3.3)
//     2. append the TSIG RR (owner = key name, class ANY, TTL 0) and add 1 to ARCOUNT
//   verify (answer)
//     1. find the last additional RR; it must be a TSIG RR, else the answer is unsigned → reject
//     2. key and algorithm must be the request's; an error field (BADSIG, BADKEY, BADTIME) is
//        reported as such, since the server then signs nothing (or signs the refusal only)
//     3. MAC = HMAC(secret, len ‖ request MAC ‖ answer without TSIG, ARCOUNT−1, original ID ‖
//        TSIG variables) must equal the answer's MAC (constant-time compare)        (4.3.3, 5.3)
//     4. time signed must be within fudge of our clock (replayed/old answers)          (5.4.3)
// Names are written uncompressed in lower case (the canonical form the MAC is computed over).
import { createHmac, timingSafeEqual } from 'node:crypto';

/** The TSIG algorithms certgate signs with (bind9's `hmac-sha256` / `hmac-sha512`). */
export type TsigAlgorithm = 'hmac-sha256' | 'hmac-sha512';

/** A TSIG key as bind9's `key` statement holds it. */
export interface TsigKey {
  /** Key name, as the server knows it (e.g. "certgate-key"). */
  name: string;
  algorithm: TsigAlgorithm;
  /** The shared secret, base64 (as in bind9's config and `tsig-keygen` output). */
  secret: string;
}

/** What sign() returns: the message to send and what verify() needs of the request. */
export interface SignedRequest {
  /** The request with its TSIG RR appended. */
  message: Buffer;
  /** The request's MAC; part of the answer's MAC computation. */
  mac: Buffer;
  /** Message ID of the request (the answer's TSIG carries it as original ID). */
  id: number;
}

/** TSIG error codes (RFC 8945 section 3), by number, for error messages. */
export const TSIG_ERRORS: Readonly<Record<number, string>> = {
  0: 'NOERROR',
  16: 'BADSIG',
  17: 'BADKEY',
  18: 'BADTIME',
  22: 'BADTRUNC',
};

/** Why an answer's signature was not accepted; `tsigError` is the server's TSIG error, if any. */
export class TsigError extends Error {
  constructor(
    message: string,
    /** BADSIG, BADKEY, BADTIME, BADTRUNC (the server's verdict), or UNSIGNED / MISMATCH / MALFORMED (ours). */
    readonly tsigError: string,
  ) {
    super(message);
    this.name = 'TsigError';
  }
}

const TYPE_TSIG = 250;
const CLASS_ANY = 255;
/** Seconds either side of our clock the server's time may be; bind9 and RFC 8945 use 300. */
const FUDGE = 300;
const HASH: Record<TsigAlgorithm, string> = { 'hmac-sha256': 'sha256', 'hmac-sha512': 'sha512' };
/** Algorithm names as they appear on the wire (RFC 8945 section 6). */
const ALGORITHM_NAME: Record<TsigAlgorithm, string> = {
  'hmac-sha256': 'hmac-sha256',
  'hmac-sha512': 'hmac-sha512',
};

/**
 * A domain name in uncompressed wire form, lower case (the canonical form TSIG MACs cover).
 * Throws on a label over 63 bytes.
 */
export function encodeName(name: string): Buffer {
  const labels = name.replace(/^\.+|\.+$/g, '').toLowerCase().split('.').filter((l) => l !== '');
  const parts: Buffer[] = [];
  for (const label of labels) {
    const bytes = Buffer.from(label, 'ascii');
    if (bytes.length > 63) throw new Error(`DNS label too long in ${name}`);
    parts.push(Buffer.from([bytes.length]), bytes);
  }
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

/** Offset just past the (possibly compressed) name at `offset`. */
export function skipName(buf: Buffer, offset: number): number {
  let at = offset;
  for (;;) {
    if (at >= buf.length) throw new Error('truncated DNS name');
    const len = buf[at]!;
    if (len === 0) return at + 1;
    if ((len & 0xc0) === 0xc0) return at + 2;
    at += len + 1;
  }
}

/** Reads the (possibly compressed) name at `offset`, lower case, without the trailing dot. */
export function readName(buf: Buffer, offset: number): string {
  const labels: string[] = [];
  let at = offset;
  for (let jumps = 0; jumps < 64; ) {
    if (at >= buf.length) throw new Error('truncated DNS name');
    const len = buf[at]!;
    if (len === 0) return labels.join('.').toLowerCase();
    if ((len & 0xc0) === 0xc0) {
      at = ((len & 0x3f) << 8) | buf[at + 1]!;
      jumps++;
      continue;
    }
    labels.push(buf.subarray(at + 1, at + 1 + len).toString('ascii'));
    at += len + 1;
  }
  throw new Error('DNS name compression loop');
}

/** A resource record in wire form (uncompressed owner name); `klass` and `type` are numbers. */
export function encodeRecord(name: string, type: number, klass: number, ttl: number, rdata: Buffer): Buffer {
  const fixed = Buffer.alloc(10);
  fixed.writeUInt16BE(type, 0);
  fixed.writeUInt16BE(klass, 2);
  fixed.writeUInt32BE(ttl, 4);
  fixed.writeUInt16BE(rdata.length, 8);
  return Buffer.concat([encodeName(name), fixed, rdata]);
}

/** The 6-byte "time signed" field (48-bit seconds since the epoch). */
function timeBytes(seconds: number): Buffer {
  const b = Buffer.alloc(6);
  b.writeUIntBE(seconds, 0, 6);
  return b;
}

/** TSIG variables (RFC 8945 4.3.3): what the MAC covers besides the message. */
function tsigVariables(key: TsigKey, time: number, fudge: number, error: number, other: Buffer): Buffer {
  const tail = Buffer.alloc(6);
  tail.writeUInt16BE(fudge, 0);
  tail.writeUInt16BE(error, 2);
  tail.writeUInt16BE(other.length, 4);
  const classTtl = Buffer.alloc(6);
  classTtl.writeUInt16BE(CLASS_ANY, 0);
  classTtl.writeUInt32BE(0, 2);
  return Buffer.concat([
    encodeName(key.name),
    classTtl,
    encodeName(ALGORITHM_NAME[key.algorithm]),
    timeBytes(time),
    tail,
    other,
  ]);
}

function hmac(key: TsigKey, parts: Buffer[]): Buffer {
  const h = createHmac(HASH[key.algorithm], Buffer.from(key.secret, 'base64'));
  for (const p of parts) h.update(p);
  return h.digest();
}

/**
 * Signs `message` (an encoded DNS message with no TSIG RR yet) with `key` at `now` (ms since
 * the epoch; the clock, for tests). Returns the message with the TSIG RR appended.
 */
export function sign(message: Buffer, key: TsigKey, now = Date.now()): SignedRequest {
  const time = Math.floor(now / 1000);
  const id = message.readUInt16BE(0);
  const mac = hmac(key, [message, tsigVariables(key, time, FUDGE, 0, Buffer.alloc(0))]);
  const rdataTail = Buffer.alloc(10 + mac.length);
  rdataTail.writeUInt16BE(FUDGE, 0);
  rdataTail.writeUInt16BE(mac.length, 2);
  mac.copy(rdataTail, 4);
  rdataTail.writeUInt16BE(id, 4 + mac.length);
  rdataTail.writeUInt16BE(0, 6 + mac.length); // error
  rdataTail.writeUInt16BE(0, 8 + mac.length); // other len
  const rdata = Buffer.concat([encodeName(ALGORITHM_NAME[key.algorithm]), timeBytes(time), rdataTail]);
  const out = Buffer.concat([message, encodeRecord(key.name, TYPE_TSIG, CLASS_ANY, 0, rdata)]);
  out.writeUInt16BE(message.readUInt16BE(10) + 1, 10);
  return { message: out, mac, id };
}

/** Offset of the last additional RR of `message` (where a TSIG RR sits), or -1 if there is none. */
function lastAdditionalOffset(message: Buffer): number {
  const qd = message.readUInt16BE(4);
  const rrs = message.readUInt16BE(6) + message.readUInt16BE(8) + message.readUInt16BE(10);
  if (message.readUInt16BE(10) === 0) return -1;
  let at = 12;
  for (let i = 0; i < qd; i++) at = skipName(message, at) + 4;
  for (let i = 0; i < rrs - 1; i++) {
    at = skipName(message, at);
    at += 10 + message.readUInt16BE(at + 8);
  }
  return at;
}

/** The fields of a TSIG RR that verify() needs. */
interface TsigRecord {
  keyName: string;
  algorithm: string;
  time: number;
  fudge: number;
  mac: Buffer;
  originalId: number;
  error: number;
  other: Buffer;
}

function parseTsig(message: Buffer, offset: number): TsigRecord | undefined {
  const keyName = readName(message, offset);
  let at = skipName(message, offset);
  if (message.readUInt16BE(at) !== TYPE_TSIG) return undefined;
  at += 10;
  const algorithm = readName(message, at);
  at = skipName(message, at);
  const time = message.readUIntBE(at, 6);
  const fudge = message.readUInt16BE(at + 6);
  const macLen = message.readUInt16BE(at + 8);
  const mac = message.subarray(at + 10, at + 10 + macLen);
  at += 10 + macLen;
  const originalId = message.readUInt16BE(at);
  const error = message.readUInt16BE(at + 2);
  const other = message.subarray(at + 6, at + 6 + message.readUInt16BE(at + 4));
  return { keyName, algorithm, time, fudge, mac, originalId, error, other };
}

/**
 * Verifies the server's answer to `request` (RFC 8945 5.3): throws a TsigError when it is unsigned,
 * signed with another key or algorithm, carries a TSIG error (BADSIG, BADKEY, BADTIME: the server
 * did not accept our signature), has a wrong MAC, or was signed too far from `now`.
 */
export function verify(answer: Buffer, request: SignedRequest, key: TsigKey, now = Date.now()): void {
  // A tampered or truncated answer must end as a TsigError, not a RangeError from the parser.
  let offset: number;
  let tsig: TsigRecord | undefined;
  try {
    offset = answer.length >= 12 ? lastAdditionalOffset(answer) : -1;
    tsig = offset < 0 ? undefined : parseTsig(answer, offset);
  } catch (err) {
    throw new TsigError(`the answer does not parse: ${(err as Error).message}`, 'MALFORMED');
  }
  if (!tsig) throw new TsigError('the answer is not signed (no TSIG record)', 'UNSIGNED');
  if (tsig.error !== 0) {
    const name = TSIG_ERRORS[tsig.error] ?? `TSIG error ${tsig.error}`;
    throw new TsigError(`the server did not accept our signature: ${name}`, name);
  }
  if (tsig.keyName !== key.name.toLowerCase() || tsig.algorithm !== ALGORITHM_NAME[key.algorithm]) {
    throw new TsigError(`the answer is signed with key ${tsig.keyName} (${tsig.algorithm}), not ours`, 'MISMATCH');
  }
  const unsigned = Buffer.from(answer.subarray(0, offset));
  unsigned.writeUInt16BE(tsig.originalId, 0);
  unsigned.writeUInt16BE(answer.readUInt16BE(10) - 1, 10);
  const reqMacLen = Buffer.alloc(2);
  reqMacLen.writeUInt16BE(request.mac.length, 0);
  const expected = hmac(key, [reqMacLen, request.mac, unsigned, tsigVariables(key, tsig.time, tsig.fudge, 0, tsig.other)]);
  if (tsig.mac.length !== expected.length || !timingSafeEqual(tsig.mac, expected)) {
    throw new TsigError('the answer\'s signature does not verify (BADSIG)', 'BADSIG');
  }
  if (Math.abs(Math.floor(now / 1000) - tsig.time) > tsig.fudge) {
    throw new TsigError(`the answer was signed at ${tsig.time}, outside ${tsig.fudge} s of our clock (BADTIME)`, 'BADTIME');
  }
}
