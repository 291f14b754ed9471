// The PROXY header parser (src/net/proxy-protocol.ts), by property: headers written the way a
// balancer writes them (test/support/proxy-header.ts) parse back to what was written, whatever
// follows them; arbitrary bytes never throw and either parse, ask for more, or are refused; no
// prefix of a valid header is refused; oversized headers are refused without waiting for them.
import assert from 'node:assert/strict';
import { isIP, SocketAddress } from 'node:net';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { MAX_V1_LENGTH, MAX_V2_LENGTH, parseProxyHeader } from '../../src/net/proxy-protocol.ts';
import { ipv6Bytes, proxyV1, proxyV2, proxyV2Local, v2Frame, V2_SIGNATURE, type HeaderEndpoints } from '../support/proxy-header.ts';

const RUNS = { seed: 42, numRuns: 300 };
const port = fc.integer({ min: 0, max: 65535 });
const endpoints = (ip: fc.Arbitrary<string>): fc.Arbitrary<HeaderEndpoints> =>
  fc.record({ source: ip, destination: ip, sourcePort: port, destinationPort: port });
const tail = fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a));
/** TLVs: type, 16-bit length, value (the parser skips them whatever they hold). */
const tlvs = fc.array(fc.tuple(fc.integer({ min: 0, max: 255 }), fc.uint8Array({ maxLength: 40 })), { maxLength: 4 }).map((list) =>
  Buffer.concat(list.map(([type, value]) => Buffer.concat([Buffer.from([type, value.length >> 8, value.length & 0xff]), Buffer.from(value)]))),
);

function sameIpv6(a: string, b: string): boolean {
  return ipv6Bytes(a).equals(ipv6Bytes(b));
}

describe('PROXY protocol parser (properties)', () => {
  it('v1 TCP4/TCP6 round trip, with any bytes after the header', () => {
    fc.assert(
      fc.property(fc.oneof(endpoints(fc.ipV4()), endpoints(fc.ipV6())), tail, (e, after) => {
        const header = proxyV1(e);
        fc.pre(header.length <= MAX_V1_LENGTH); // two long IPv6 texts can exceed the spec's bound
        const parsed = parseProxyHeader(Buffer.concat([header, after]));
        assert.equal(parsed.status, 'done');
        if (parsed.status !== 'done' || parsed.header.command !== 'proxy') throw new Error('not a proxy header');
        assert.equal(parsed.length, header.length);
        assert.deepEqual(parsed.header.source, { address: e.source, port: e.sourcePort });
        assert.deepEqual(parsed.header.destination, { address: e.destination, port: e.destinationPort });
      }),
      RUNS,
    );
  });

  it('v2 TCP4/TCP6 round trip with TLVs skipped; IPv6 printed as Node prints peers', () => {
    fc.assert(
      fc.property(fc.oneof(endpoints(fc.ipV4()), endpoints(fc.ipV6())), tlvs, tail, (e, extra, after) => {
        const header = proxyV2(e, extra);
        const parsed = parseProxyHeader(Buffer.concat([header, after]));
        if (parsed.status !== 'done' || parsed.header.command !== 'proxy') throw new Error(`not parsed: ${JSON.stringify(parsed)}`);
        assert.equal(parsed.length, header.length);
        assert.equal(parsed.header.version, 2);
        const { source, destination } = parsed.header;
        assert.equal(source.port, e.sourcePort);
        assert.equal(destination.port, e.destinationPort);
        if (isIP(e.source) === 4) {
          assert.equal(source.address, e.source);
          assert.equal(destination.address, e.destination);
        } else {
          assert.ok(sameIpv6(source.address, e.source), `${source.address} is ${e.source}`);
          assert.ok(sameIpv6(destination.address, e.destination), `${destination.address} is ${e.destination}`);
          assert.equal(source.address, new SocketAddress({ address: e.source, family: 'ipv6' }).address);
        }
      }),
      RUNS,
    );
  });

  it('every proper prefix of a valid header asks for more bytes', () => {
    const header = fc.oneof(
      endpoints(fc.ipV4()).map(proxyV1),
      endpoints(fc.ipV6()).map((e) => proxyV2(e)),
      tlvs.map(proxyV2Local),
    );
    fc.assert(
      fc.property(header, fc.nat(), (h, cut) => {
        fc.pre(h.length <= MAX_V1_LENGTH || h[0] !== 0x50);
        const prefix = h.subarray(0, cut % h.length);
        assert.deepEqual(parseProxyHeader(prefix), { status: 'more' });
      }),
      RUNS,
    );
  });

  it('arbitrary bytes never throw: done (within the bounds), more, or invalid', () => {
    // Biased towards the two signatures, so the parser gets past its first check.
    const start = fc.constantFrom(Buffer.alloc(0), Buffer.from('PROXY '), Buffer.from('PROXY TCP4 '), V2_SIGNATURE, Buffer.concat([V2_SIGNATURE, Buffer.from([0x21, 0x11])]));
    fc.assert(
      fc.property(start, fc.uint8Array({ maxLength: 300 }), (s, rest) => {
        const parsed = parseProxyHeader(Buffer.concat([s, Buffer.from(rest)]));
        assert.ok(['done', 'more', 'invalid'].includes(parsed.status));
        if (parsed.status === 'done') assert.ok(parsed.length <= Math.max(MAX_V1_LENGTH, 16 + MAX_V2_LENGTH));
        if (parsed.status === 'done' && parsed.header.command === 'proxy') assert.notEqual(isIP(parsed.header.source.address), 0);
      }),
      RUNS,
    );
  });

  it('v2 LOCAL keeps the peer; UNKNOWN v1 too', () => {
    assert.deepEqual(parseProxyHeader(proxyV2Local()), { status: 'done', header: { command: 'local', version: 2 }, length: 16 });
    const unknown = Buffer.from('PROXY UNKNOWN\r\nGET /');
    assert.deepEqual(parseProxyHeader(unknown), { status: 'done', header: { command: 'local', version: 1 }, length: 15 });
  });

  it('refuses at once: a v1 line with no CRLF in 107 bytes, a v2 length over the bound, plain TLS or HTTP, UDP, bad ports', () => {
    const refused = (b: Buffer) => assert.equal(parseProxyHeader(b).status, 'invalid', b.toString('latin1').slice(0, 40));
    refused(Buffer.from(`PROXY TCP4 ${'1'.repeat(120)}`));
    refused(v2Frame(0x21, 0x11, Buffer.alloc(MAX_V2_LENGTH + 1)).subarray(0, 16));
    refused(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00]));
    refused(Buffer.from('GET / HTTP/1.1\r\n'));
    refused(v2Frame(0x21, 0x12, Buffer.alloc(12)));
    refused(v2Frame(0x21, 0x11, Buffer.alloc(8)));
    refused(v2Frame(0x11, 0x11, Buffer.alloc(12)));
    refused(Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 65536 80\r\n'));
    refused(Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 080 80\r\n'));
    refused(Buffer.from('PROXY TCP6 1.2.3.4 5.6.7.8 1 80\r\n'));
  });
});
