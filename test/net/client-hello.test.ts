// The ClientHello peek (src/net/client-hello.ts): the server name and ALPN list of real
// ClientHellos (node:tls and openssl s_client, captured off a plain TCP socket); for built ones
// with random names, protocols and other extensions, the same values back; every prefix of one
// answered `more`; and on any bytes at all it never throws (fast-check, fixed seed).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import { connect } from 'node:tls';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { CLIENT_HELLO_MAX_BYTES, peekClientHello } from '../../src/net/client-hello.ts';

/** The first bytes a client sends to a plain TCP server, once it has sent at least one record. */
async function firstBytes(startClient: (port: number) => () => void): Promise<Buffer> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  let stop: (() => void) | undefined;
  try {
    return await new Promise<Buffer>((resolve, reject) => {
      server.once('connection', (socket) => {
        let got = Buffer.alloc(0);
        socket.on('data', (chunk: Buffer) => {
          got = Buffer.concat([got, chunk]);
          if (got.length >= 5 && got.length >= 5 + got.readUInt16BE(3)) {
            socket.destroy();
            resolve(got);
          }
        });
        socket.on('error', reject);
      });
      stop = startClient(port);
    });
  } finally {
    stop?.();
    server.close();
  }
}

/** A ClientHello record with these extensions (type, data) and nothing else of note. */
function clientHello(extensions: Array<[number, Buffer]>, sessionId = Buffer.alloc(32, 7)): Buffer {
  const ext = Buffer.concat(extensions.map(([type, data]) => Buffer.concat([u16(type), u16(data.length), data])));
  const body = Buffer.concat([Buffer.from([3, 3]), Buffer.alloc(32, 1), Buffer.from([sessionId.length]), sessionId, u16(4), Buffer.from([0x13, 1, 0x13, 2]), Buffer.from([1, 0]), u16(ext.length), ext]);
  const handshake = Buffer.concat([Buffer.from([1, body.length >> 16, (body.length >> 8) & 255, body.length & 255]), body]);
  return Buffer.concat([Buffer.from([22, 3, 1]), u16(handshake.length), handshake]);
}

function u16(n: number): Buffer {
  return Buffer.from([n >> 8, n & 255]);
}

function sniExtension(name: string): [number, Buffer] {
  const host = Buffer.from(name, 'latin1');
  const entry = Buffer.concat([Buffer.from([0]), u16(host.length), host]);
  return [0, Buffer.concat([u16(entry.length), entry])];
}

function alpnExtension(protocols: string[]): [number, Buffer] {
  const list = Buffer.concat(protocols.map((p) => Buffer.concat([Buffer.from([p.length]), Buffer.from(p, 'latin1')])));
  return [16, Buffer.concat([u16(list.length), list])];
}

const printableName = fc.stringMatching(/^[\x21-\x7e]{1,253}$/);
const protocol = fc.stringMatching(/^[\x21-\x7e]{1,40}$/);
const otherExtension = fc.tuple(fc.integer({ min: 1, max: 0xfffe }).filter((t) => t !== 16), fc.uint8Array({ maxLength: 300 })).map(([t, d]): [number, Buffer] => [t, Buffer.from(d)]);

describe('peekClientHello', () => {
  test("node:tls's ClientHello: its server name and ALPN list", async () => {
    const bytes = await firstBytes((port) => {
      const s = connect({ port, host: '127.0.0.1', servername: 'Shop.Example.com', ALPNProtocols: ['h2', 'http/1.1'] });
      s.on('error', () => {});
      return () => s.destroy();
    });
    assert.deepEqual(peekClientHello(bytes), { kind: 'hello', serverName: 'Shop.Example.com', alpn: ['h2', 'http/1.1'] });
  });

  test("openssl s_client's ClientHello (TLS 1.3, post-quantum key share): its server name and ALPN list", async () => {
    const bytes = await firstBytes((port) => {
      const child = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'r1.flood.example', '-alpn', 'acme-tls/1'], { stdio: ['pipe', 'ignore', 'ignore'] });
      return () => child.kill();
    });
    assert.deepEqual(peekClientHello(bytes), { kind: 'hello', serverName: 'r1.flood.example', alpn: ['acme-tls/1'] });
  });

  test('built ClientHellos: the name and protocols back, among any other extensions; every prefix is `more`', () => {
    fc.assert(
      fc.property(fc.option(printableName), fc.option(fc.array(protocol, { minLength: 1, maxLength: 5 })), fc.array(otherExtension, { maxLength: 4 }), (name, alpn, others) => {
        const exts = [...others, ...(name !== null ? [sniExtension(name)] : []), ...(alpn !== null ? [alpnExtension(alpn)] : [])];
        const hello = clientHello(exts);
        assert.deepEqual(peekClientHello(hello), { kind: 'hello', serverName: name ?? undefined, alpn: alpn ?? undefined });
        for (const cut of [0, 1, 4, 5, 9, hello.length - 1]) {
          if (cut < hello.length) assert.deepEqual(peekClientHello(hello.subarray(0, cut)), { kind: 'more' }, `prefix of ${cut} bytes`);
        }
        // Bytes after the record (early data, a second record) change nothing.
        assert.deepEqual(peekClientHello(Buffer.concat([hello, Buffer.from([23, 3, 3, 0, 1, 0])])), peekClientHello(hello));
      }),
      { seed: 42, numRuns: 300 },
    );
  });

  test('non-printable or empty names, and malformed lengths, are `other` (node:tls decides them)', () => {
    assert.deepEqual(peekClientHello(clientHello([sniExtension('a\u0000b.example')])), { kind: 'other' });
    assert.deepEqual(peekClientHello(clientHello([sniExtension('bücher.example')])), { kind: 'other' });
    assert.deepEqual(peekClientHello(clientHello([sniExtension('')])), { kind: 'other' });
    const broken = clientHello([sniExtension('x.example')]);
    broken[broken.length - 11] = 0xff; // the name's length (high byte) now runs past its extension
    assert.deepEqual(peekClientHello(broken), { kind: 'other' });
    assert.deepEqual(peekClientHello(Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n')), { kind: 'other' });
    assert.deepEqual(peekClientHello(Buffer.from('GET / HTTP/1.1\r\n')), { kind: 'other' });
  });

  test('never throws and never asks for more than one record, whatever the bytes', () => {
    const anyBytes = fc.oneof(
      fc.uint8Array({ maxLength: 600 }),
      // Valid-looking headers with random bodies, to get past the first checks.
      fc.tuple(fc.integer({ min: 0, max: 0x4100 }), fc.uint8Array({ maxLength: 600 })).map(([len, body]) => Buffer.concat([Buffer.from([22, 3, 1, len >> 8, len & 255, 1, 0, body.length >> 8, body.length & 255]), Buffer.from(body)])),
    );
    fc.assert(
      fc.property(anyBytes, (bytes) => {
        const peeked = peekClientHello(bytes);
        assert.ok(['more', 'other', 'hello'].includes(peeked.kind));
        if (peeked.kind === 'more') assert.ok(bytes.length < CLIENT_HELLO_MAX_BYTES);
      }),
      { seed: 42, numRuns: 2_000 },
    );
  });
});
