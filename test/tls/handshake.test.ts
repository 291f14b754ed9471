// The handshake path in isolation, on real TLS sockets:
// - pins Node's order (ALPNCallback before SNICallback, both called on the TLSSocket), which the
//   tls-alpn-01 path relies on;
// - an SNI lookup that fails answers cb(err): the client sees a failed handshake, the server
//   stays up and nothing rejects unhandled;
// - a slow issuance gets the fallback after handshakeWait and keeps running;
// - acme-tls/1 handshakes for challenges not in memory pass the abuse limits before storage.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connect, createSecureContext, createServer, type SecureContext, type TLSSocket } from 'node:tls';
import { createSelfSignedCertificate } from '../../src/acme/x509.ts';
import { TlsAlpn01Solver } from '../../src/acme/solvers.ts';
import { silentLogger } from '../../src/util/log.ts';
import { IssuanceLimits } from '../../src/issuance/limits.ts';
import { FileStorage } from '../../src/storage/file/store.ts';
import { CertificateCache } from '../../src/tls/cache.ts';
import type { CertificateManager, ObtainOutcome } from '../../src/issuance/manager.ts';
import { createHandshakeCallbacks, type HandshakeOutcome } from '../../src/tls/handshake.ts';
import { CountingStorage } from '../support/gateway.ts';
import { capturingLogger, type LogLine } from '../support/log-lines.ts';

function handshake(port: number, servername: string, alpn: string[]): Promise<{ ok: true; cert: string; alpn: string | false | null } | { ok: false; error: string }> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port, servername, ALPNProtocols: alpn, rejectUnauthorized: false }, () => {
      const result = { ok: true as const, cert: String(socket.getPeerCertificate().subject?.CN ?? ''), alpn: socket.alpnProtocol };
      socket.end();
      resolve(result);
    });
    socket.on('error', (err) => resolve({ ok: false, error: err.message }));
  });
}

describe("Node's TLS callback order", () => {
  test('ALPNCallback runs before SNICallback, both with the TLSSocket as this', async () => {
    const pair = await createSelfSignedCertificate('order.test');
    const events: string[] = [];
    const server = createServer({
      cert: pair.certPem,
      key: pair.keyPem,
      ALPNCallback(this: TLSSocket, { protocols }) {
        events.push(`alpn:${this.constructor.name}`);
        return protocols[0];
      },
      SNICallback(this: TLSSocket, name: string, cb: (err: Error | null, ctx?: SecureContext) => void) {
        events.push(`sni:${this.constructor.name}`);
        cb(null, createSecureContext({ cert: pair.certPem, key: pair.keyPem }));
      },
    } as Parameters<typeof createServer>[0]);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const r = await handshake((server.address() as AddressInfo).port, 'order.test', ['acme-tls/1']);
      assert.ok(r.ok);
      assert.deepEqual(events, ['alpn:TLSSocket', 'sni:TLSSocket']);
    } finally {
      server.close();
    }
  });
});

describe('createHandshakeCallbacks', () => {
  let dir: string;
  let port: number;
  let server: ReturnType<typeof createServer>;
  const outcomes: Array<[HandshakeOutcome, string | undefined]> = [];
  let solver: TlsAlpn01Solver;
  const slow: Array<() => void> = [];
  const unhandled: unknown[] = [];
  const onUnhandled = (err: unknown) => unhandled.push(err);

  before(async () => {
    process.on('unhandledRejection', onUnhandled);
    dir = await mkdtemp(join(tmpdir(), 'certgate-hs-'));
    const storage = await FileStorage.open(dir);
    solver = new TlsAlpn01Solver(storage);
    const fallback = await createSelfSignedCertificate('fallback.invalid');
    const real = await createSelfSignedCertificate('ready.test');
    const readyContext = createSecureContext({ cert: real.certPem, key: real.keyPem });
    const cache = new CertificateCache(10);
    // A stand-in for the manager: the handshake path only needs obtain().
    const manager = {
      obtain(domain: string): Promise<ObtainOutcome> {
        if (domain === 'ready.test') return Promise.resolve({ kind: 'ready', source: 'issued', certificate: { domain, context: readyContext, notAfter: Date.now() + 86_400_000, fingerprint256: '', ca: 'x' } });
        if (domain === 'slow.test') return new Promise((resolve) => slow.push(() => resolve({ kind: 'failed', reason: 'late' })));
        if (domain === 'broken.test') return Promise.reject(new Error('storage exploded'));
        return Promise.resolve({ kind: 'denied', reason: 'no' });
      },
    } as unknown as CertificateManager;
    const callbacks = createHandshakeCallbacks({
      cache,
      manager,
      tlsAlpn: solver,
      fallback: createSecureContext({ cert: fallback.certPem, key: fallback.keyPem }),
      handshakeWaitMs: 300,
      logger: silentLogger(),
      onOutcome: (o, d) => outcomes.push([o, d]),
    });
    server = createServer({ cert: fallback.certPem, key: fallback.keyPem, ...callbacks } as Parameters<typeof createServer>[0], (s) => s.end());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  after(async () => {
    for (const f of slow) f();
    server.close();
    await rm(dir, { recursive: true, force: true });
    process.off('unhandledRejection', onUnhandled);
  });

  test('a ready certificate is served, with http/1.1 selected', async () => {
    const r = await handshake(port, 'ready.test', ['h2', 'http/1.1']);
    assert.ok(r.ok && r.cert === 'ready.test' && r.alpn === 'http/1.1');
  });

  test('a denied name gets the fallback', async () => {
    const r = await handshake(port, 'denied.test', ['http/1.1']);
    assert.ok(r.ok && r.cert === 'fallback.invalid');
  });

  test('acme-tls/1 without a pending challenge fails the handshake (cb(err)), server stays up', async () => {
    const r = await handshake(port, 'nochallenge.test', ['acme-tls/1']);
    assert.equal(r.ok, false);
    const again = await handshake(port, 'ready.test', ['http/1.1']);
    assert.ok(again.ok);
  });

  test('acme-tls/1 with a pending challenge gets the validation certificate', async () => {
    await solver.present('validate.test', 'token', 'token.thumbprint');
    try {
      const r = await handshake(port, 'validate.test', ['acme-tls/1']);
      assert.ok(r.ok);
      assert.equal(r.alpn, 'acme-tls/1');
      assert.ok(outcomes.some(([o, d]) => o === 'challenge' && d === 'validate.test'));
    } finally {
      await solver.cleanup('validate.test', 'token', 'token.thumbprint');
    }
  });

  test('a lookup that rejects still answers (fallback), no unhandled rejection', async () => {
    const r = await handshake(port, 'broken.test', ['http/1.1']);
    assert.ok(r.ok && r.cert === 'fallback.invalid');
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.deepEqual(unhandled, []);
  });

  test('a slow issuance: fallback after handshakeWait, issuance not cancelled', async () => {
    const started = performance.now();
    const r = await handshake(port, 'slow.test', ['http/1.1']);
    assert.ok(r.ok && r.cert === 'fallback.invalid');
    assert.ok(performance.now() - started >= 290, 'waited for handshakeWait');
    assert.equal(slow.length, 1, 'the issuance is still pending');
  });

  test('a client that speaks no protocol we do is refused', async () => {
    const r = await handshake(port, 'ready.test', ['h2']);
    assert.equal(r.ok, false);
  });
});

describe('acme-tls/1 handshakes inside the abuse limits (step 2)', () => {
  const BURST = 3;
  let dir: string;
  let port: number;
  let server: ReturnType<typeof createServer>;
  let storage: CountingStorage;
  let here: TlsAlpn01Solver;
  let elsewhere: TlsAlpn01Solver;
  let lines: LogLine[];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'certgate-hs-limits-'));
    const inner = await FileStorage.open(dir);
    storage = new CountingStorage(inner);
    const captured = capturingLogger('info');
    lines = captured.lines;
    here = new TlsAlpn01Solver(storage, captured.logger);
    // Another process on the same storage: its challenges are found in storage only.
    elsewhere = new TlsAlpn01Solver(inner);
    const fallback = await createSelfSignedCertificate('fallback.invalid');
    const limits = new IssuanceLimits({ perClient: { rate: 0.001, burst: BURST }, global: false, unknownNameCache: 100 }, { logger: captured.logger });
    const callbacks = createHandshakeCallbacks({
      cache: new CertificateCache(10),
      manager: { obtain: () => Promise.resolve({ kind: 'denied', reason: 'no' }) } as unknown as CertificateManager,
      tlsAlpn: here,
      fallback: createSecureContext({ cert: fallback.certPem, key: fallback.keyPem }),
      handshakeWaitMs: 300,
      logger: captured.logger,
      limits,
    });
    server = createServer({ cert: fallback.certPem, key: fallback.keyPem, ...callbacks } as Parameters<typeof createServer>[0], (s) => s.end());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  after(async () => {
    server.close();
    await storage.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('100 random names: storage is read only within the client\'s bucket, and a handful of log lines', async () => {
    const reads = storage.counts.get;
    for (let i = 0; i < 100; i++) {
      const r = await handshake(port, `r${i}.random.test`, ['acme-tls/1']);
      assert.equal(r.ok, false, 'no challenge, no certificate');
    }
    // Each lookup reads cert and key: BURST lookups at most (the bucket refills 1 per 1000 s).
    assert.ok(storage.counts.get - reads <= 2 * BURST, `${storage.counts.get - reads} storage reads for 100 handshakes`);
    const warnings = lines.filter((l) => l.step === 'tls-alpn-01-validation' || l.step === 'rate-limit');
    assert.ok(warnings.length <= 2 * BURST, `${warnings.length} log lines for 100 handshakes`);
  });

  test('with the bucket empty, a challenge this process presented is still served from memory', async () => {
    await here.present('mine.test', 'token', 'token.thumbprint');
    try {
      const reads = storage.counts.get;
      const r = await handshake(port, 'mine.test', ['acme-tls/1']);
      assert.ok(r.ok && r.alpn === 'acme-tls/1');
      assert.equal(storage.counts.get, reads, 'no storage read');
    } finally {
      await here.cleanup('mine.test');
    }
  });

  test('with the bucket empty, a challenge another process presented is refused (limits first, then storage)', async () => {
    await elsewhere.present('theirs.test', 'token', 'token.thumbprint');
    try {
      const reads = storage.counts.get;
      const r = await handshake(port, 'theirs.test', ['acme-tls/1']);
      assert.equal(r.ok, false);
      assert.equal(storage.counts.get, reads, 'no storage read');
    } finally {
      await elsewhere.cleanup('theirs.test');
    }
  });
});
