// TSIG (RFC 8945) signing and verification, on fixed vectors built here byte by byte from the
// RFC's field layout (independently of src/acme/dns/tsig.ts's own encoder). That the real server
// accepts our signatures and that we accept its answers is test/acme/dns/rfc2136.test.ts (bind9).
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { sign, TsigError, verify, type TsigKey } from '../../../src/acme/dns/tsig.ts';

const KEY: TsigKey = { name: 'certgate-key', algorithm: 'hmac-sha256', secret: Buffer.alloc(32, 0x11).toString('base64') };
const NOW = 1_700_000_000_000; // ms
const TIME = NOW / 1000;

/** "certgate-key" / "hmac-sha256" in wire form, written out by hand. */
const KEY_NAME = Buffer.concat([Buffer.from([12]), Buffer.from('certgate-key'), Buffer.from([0])]);
const ALG_NAME = Buffer.concat([Buffer.from([11]), Buffer.from('hmac-sha256'), Buffer.from([0])]);

/** A query: ID 0x1234, RD, one question "example.test SOA IN". */
const QUERY = Buffer.from('123401000001000000000000076578616d706c65047465737400000600' + '01', 'hex');

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}
function time48(t: number): Buffer {
  const b = Buffer.alloc(6);
  b.writeUIntBE(t, 0, 6);
  return b;
}
/** TSIG variables (RFC 8945 4.3.3) with error 0 and no other data. */
function variables(time: number, fudge = 300, error = 0): Buffer {
  return Buffer.concat([KEY_NAME, u16(255), Buffer.alloc(4), ALG_NAME, time48(time), u16(fudge), u16(error), u16(0)]);
}
function mac(...parts: Buffer[]): Buffer {
  const h = createHmac('sha256', Buffer.from(KEY.secret, 'base64'));
  for (const p of parts) h.update(p);
  return h.digest();
}
/** A TSIG RR as a server writes it. */
function tsigRecord(time: number, theMac: Buffer, originalId: number, error = 0, fudge = 300): Buffer {
  const rdata = Buffer.concat([ALG_NAME, time48(time), u16(fudge), u16(theMac.length), theMac, u16(originalId), u16(error), u16(0)]);
  return Buffer.concat([KEY_NAME, u16(250), u16(255), Buffer.alloc(4), u16(rdata.length), rdata]);
}
/** The answer to QUERY (QR set, NOERROR, no records), signed like a server would for `request`. */
function signedAnswer(requestMac: Buffer, time = TIME, opts: { error?: number; macOverride?: Buffer } = {}): Buffer {
  const body = Buffer.from(QUERY);
  body.writeUInt16BE(0x8500, 2); // QR, AA, RD
  const theMac = opts.macOverride ?? mac(u16(requestMac.length), requestMac, body, variables(time));
  const out = Buffer.concat([body, tsigRecord(time, theMac, 0x1234, opts.error ?? 0)]);
  out.writeUInt16BE(1, 10);
  return out;
}

describe('TSIG (RFC 8945)', () => {
  test('sign: appends the TSIG RR (MAC over message + TSIG variables) and counts it in ARCOUNT', () => {
    const signed = sign(QUERY, KEY, NOW);
    const expectedMac = mac(QUERY, variables(TIME));
    assert.equal(signed.mac.toString('hex'), expectedMac.toString('hex'));
    const expected = Buffer.concat([QUERY, tsigRecord(TIME, expectedMac, 0x1234)]);
    expected.writeUInt16BE(1, 10);
    assert.equal(signed.message.toString('hex'), expected.toString('hex'));
    assert.equal(signed.id, 0x1234);
  });

  test('verify: accepts an answer whose MAC covers the request MAC; rejects any flipped byte', () => {
    const request = sign(QUERY, KEY, NOW);
    const answer = signedAnswer(request.mac);
    verify(answer, request, KEY, NOW);
    // The request MAC is part of the answer's MAC: the same answer to another request fails.
    const other = sign(QUERY, KEY, NOW + 1000);
    assert.throws(() => verify(answer, other, KEY, NOW), (e: unknown) => e instanceof TsigError && e.tsigError === 'BADSIG');
    // Every byte of the message part is covered (property over the position and the flip).
    const bodyLength = QUERY.length;
    fc.assert(
      fc.property(fc.integer({ min: 2, max: bodyLength - 1 }), fc.integer({ min: 1, max: 255 }), (at, flip) => {
        const tampered = Buffer.from(answer);
        tampered[at]! ^= flip;
        assert.throws(() => verify(tampered, request, KEY, NOW), TsigError);
      }),
      { seed: 42, numRuns: 300 },
    );
  });

  test('verify: an unsigned answer, a server TSIG error and a stale signature are each named', () => {
    const request = sign(QUERY, KEY, NOW);
    const unsigned = Buffer.from(QUERY);
    unsigned.writeUInt16BE(0x8509, 2); // NOTAUTH, no TSIG
    assert.throws(() => verify(unsigned, request, KEY, NOW), (e: unknown) => e instanceof TsigError && e.tsigError === 'UNSIGNED');
    const badsig = signedAnswer(request.mac, TIME, { error: 16, macOverride: Buffer.alloc(0) });
    assert.throws(() => verify(badsig, request, KEY, NOW), (e: unknown) => e instanceof TsigError && e.tsigError === 'BADSIG' && /did not accept/.test(e.message));
    const badkey = signedAnswer(request.mac, TIME, { error: 17, macOverride: Buffer.alloc(0) });
    assert.throws(() => verify(badkey, request, KEY, NOW), (e: unknown) => e instanceof TsigError && e.tsigError === 'BADKEY');
    const stale = signedAnswer(request.mac, TIME - 301);
    assert.throws(() => verify(stale, request, KEY, NOW), (e: unknown) => e instanceof TsigError && e.tsigError === 'BADTIME');
  });

  test('sign: hmac-sha512 uses SHA-512 and the hmac-sha512 algorithm name', () => {
    const key512: TsigKey = { ...KEY, algorithm: 'hmac-sha512' };
    const signed = sign(QUERY, key512, NOW);
    const alg = Buffer.concat([Buffer.from([11]), Buffer.from('hmac-sha512'), Buffer.from([0])]);
    const vars = Buffer.concat([KEY_NAME, u16(255), Buffer.alloc(4), alg, time48(TIME), u16(300), u16(0), u16(0)]);
    const expected = createHmac('sha512', Buffer.from(KEY.secret, 'base64')).update(QUERY).update(vars).digest();
    assert.equal(signed.mac.toString('hex'), expected.toString('hex'));
    assert.ok(signed.message.includes(alg));
  });
});
