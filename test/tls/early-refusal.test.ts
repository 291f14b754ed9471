// Refusal before node:tls (src/tls/early-refusal.ts), on a real node:tls server with real
// clients: a ClientHello the manager certainly refuses (and an invalid name) gets the
// unrecognized_name alert with no TLSSocket made (the SNI callback never runs, no tlsClientError);
// everything else is handed over untouched: accepted names, acme-tls/1, no SNI, a ClientHello
// that comes late (after firstBytesMs), and a name in memory even if the manager would refuse it.
import assert from 'node:assert/strict';
import { connect as tcpConnect, type AddressInfo } from 'node:net';
import { connect, createSecureContext, createServer, type Server, type SecureContext } from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createSelfSignedCertificate } from '../../src/acme/x509.ts';
import type { HandshakeOutcome } from '../../src/tls/handshake.ts';
import { EarlyRefusal } from '../../src/tls/early-refusal.ts';
import { clientHelloBytes } from '../support/clients.ts';

/** How a Node TLS client's handshake ended: 'connected <alpn>' or the error's code. */
function handshake(port: number, servername: string | undefined, ALPNProtocols = ['http/1.1']): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port, ...(servername !== undefined ? { servername } : {}), rejectUnauthorized: false, ALPNProtocols }, () => {
      socket.destroy();
      resolve(`connected ${socket.alpnProtocol}`);
    });
    socket.setTimeout(30_000, () => socket.destroy(Object.assign(new Error('handshake timeout'), { code: 'TIMEOUT' })));
    socket.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

describe('EarlyRefusal', () => {
  let server: Server;
  let port: number;
  let early: EarlyRefusal;
  let context: SecureContext;
  let pems: { certPem: string; keyPem: string };
  const sniCalls: string[] = [];
  const tlsErrors: string[] = [];
  const outcomes: Array<[HandshakeOutcome, string | undefined]> = [];
  const cached = new Set<string>(['cached-but-refused.example.com']);
  const storageReads: string[] = [];

  before(async () => {
    pems = await createSelfSignedCertificate('early.test');
    const { certPem, keyPem } = pems;
    context = createSecureContext({ cert: certPem, key: keyPem });
    server = createServer({
      cert: certPem,
      key: keyPem,
      ALPNProtocols: ['http/1.1', 'acme-tls/1'],
      SNICallback: (name, cb) => {
        sniCalls.push(name);
        cb(null, context);
      },
    });
    server.on('tlsClientError', (err) => tlsErrors.push(err.message));
    early = new EarlyRefusal({
      cache: { peek: (d: string) => (cached.has(d) ? ({} as never) : undefined) },
      manager: {
        // refused-*: a remembered denial; unstored-*: not in the filter, the client over its limits.
        refusalNow: (d: string) => (d.startsWith('refused') || d.startsWith('cached-but-refused') ? 'refused' : d.startsWith('unstored') ? 'unless-stored' : undefined),
        loadIfStored: async (d: string) => {
          storageReads.push(d);
          if (d.startsWith('unstored-broken')) throw new Error('storage down');
          return d.startsWith('unstored-but-stored');
        },
      },
      protocols: ['http/1.1'],
      onOutcome: (o, d) => outcomes.push([o, d]),
      firstBytesMs: 50,
      refusalsPerSecond: 0, // always peeking; step 0 has its own test below
    });
    early.wire(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  after(() => {
    early.close();
    server.close();
  });

  test('a certainly refused name and an invalid one: the alert, no TLSSocket (no SNI callback, no tlsClientError)', async () => {
    const errorsBefore = tlsErrors.length;
    assert.equal(await handshake(port, 'refused-1.flood.example'), 'ERR_SSL_TLSV1_UNRECOGNIZED_NAME');
    assert.equal(await handshake(port, 'localhost'), 'ERR_SSL_TLSV1_UNRECOGNIZED_NAME');
    assert.deepEqual(sniCalls.filter((n) => n === 'refused-1.flood.example' || n === 'localhost'), []);
    assert.deepEqual(outcomes.slice(-2), [
      ['refused', 'refused-1.flood.example'],
      ['refused', undefined],
    ]);
    await sleep(50);
    assert.equal(tlsErrors.length, errorsBefore, 'node:tls never saw them');
  });

  test('everything else is handed over untouched', async () => {
    assert.equal(await handshake(port, 'shop.example.com'), 'connected http/1.1');
    assert.equal(await handshake(port, 'cached-but-refused.example.com'), 'connected http/1.1', 'in memory: served');
    assert.equal(await handshake(port, 'refused-2.flood.example', ['acme-tls/1']), 'connected acme-tls/1', 'a CA validating');
    assert.equal(await handshake(port, undefined), 'connected http/1.1', 'no SNI');
    assert.deepEqual(sniCalls.slice(-3), ['shop.example.com', 'cached-but-refused.example.com', 'refused-2.flood.example']);
    assert.ok(!outcomes.some(([, d]) => d === 'refused-2.flood.example'));
  });

  test('not in the filter and over the limits: storage is read first; stored (a writer not heard of) or unreadable → handed over, else the alert', async () => {
    assert.equal(await handshake(port, 'unstored-1.flood.example'), 'ERR_SSL_TLSV1_UNRECOGNIZED_NAME');
    assert.equal(await handshake(port, 'unstored-but-stored.example.com'), 'connected http/1.1', 'stored elsewhere: served');
    assert.equal(await handshake(port, 'unstored-broken.example.com'), 'connected http/1.1', 'storage failed: the SNI callback decides');
    assert.deepEqual(storageReads.slice(-3), ['unstored-1.flood.example', 'unstored-but-stored.example.com', 'unstored-broken.example.com']);
    assert.ok(!sniCalls.includes('unstored-1.flood.example'), 'refused before node:tls');
    assert.deepEqual(sniCalls.slice(-2), ['unstored-but-stored.example.com', 'unstored-broken.example.com']);
    assert.deepEqual(outcomes.at(-1), ['refused', 'unstored-1.flood.example']);
  });

  test('a ClientHello that comes after firstBytesMs goes to node:tls (its own handshake timeout applies)', async () => {
    const hello = await clientHelloBytes('refused-late.flood.example');
    const socket = tcpConnect(port, '127.0.0.1');
    socket.on('error', () => {});
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    // 50 ms to hand over; 3 s leaves a loaded machine ample margin.
    await sleep(3_000);
    socket.write(hello);
    for (let i = 0; i < 1_000 && !sniCalls.includes('refused-late.flood.example'); i++) await sleep(10);
    socket.destroy();
    assert.ok(sniCalls.includes('refused-late.flood.example'), 'node:tls ran the SNI callback');
  });

  test('the ClientHello split over two writes is handed over whole', async () => {
    const hello = await clientHelloBytes('split.example.com');
    const socket = tcpConnect(port, '127.0.0.1');
    socket.on('error', () => {});
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    socket.write(hello.subarray(0, 20));
    await sleep(200);
    socket.write(hello.subarray(20));
    for (let i = 0; i < 1_000 && !sniCalls.includes('split.example.com'); i++) await sleep(10);
    socket.destroy();
    assert.ok(sniCalls.includes('split.example.com'));
  });

  test('step 0: connections are peeked only once refusals reach refusalsPerSecond within a second, for holdMs', async () => {
    const sni: string[] = [];
    const plain = createServer({
      cert: pems.certPem,
      key: pems.keyPem,
      ALPNProtocols: ['http/1.1'],
      SNICallback: (name, cb) => {
        sni.push(name);
        cb(null, context);
      },
    });
    plain.on('tlsClientError', () => {});
    const shield = new EarlyRefusal({
      cache: { peek: () => undefined },
      manager: { refusalNow: () => 'refused', loadIfStored: async () => false },
      protocols: ['http/1.1'],
      refusalsPerSecond: 3,
      holdMs: 60_000,
    });
    shield.wire(plain);
    await new Promise<void>((resolve) => plain.listen(0, '127.0.0.1', resolve));
    const p = (plain.address() as AddressInfo).port;
    try {
      assert.equal(shield.peeking, false);
      assert.equal(await handshake(p, 'refused-a.flood.example'), 'connected http/1.1', 'not peeked: node:tls and its SNI callback answer');
      assert.deepEqual(sni, ['refused-a.flood.example']);
      // Three refusals within one second (the SNI callback's, as the gateway reports them).
      const now = Date.now();
      const second = Math.floor(now / 1000) * 1000;
      for (let i = 0; i < 3; i++) shield.noteRefusal(second + 10 * i);
      assert.equal(shield.peeking, true);
      assert.equal(await handshake(p, 'refused-b.flood.example'), 'ERR_SSL_TLSV1_UNRECOGNIZED_NAME', 'peeked: refused before node:tls');
      assert.deepEqual(sni, ['refused-a.flood.example']);
    } finally {
      shield.close();
      plain.close();
    }
  });
});
