// The handshake deadline (src/tls/deadline.ts) on a real node:tls server:
// - a socket that sends nothing, and one that dribbles a real ClientHello a few bytes at a time
//   (node:tls's own idle timer would never fire for it), are closed after the deadline;
// - an SNI decision that takes longer than the deadline (an issuance wait) does not count: the
//   handshake completes;
// - an established connection outlives the deadline (node:tls keeps the accepted socket as the
//   TLS socket's `_parent`, which the deadline relies on: pinned here).
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { connect as tcpConnect, type AddressInfo, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, createSecureContext, createServer, type SecureContext, type Server, type TLSSocket } from 'node:tls';
import { createSelfSignedCertificate } from '../../src/acme/x509.ts';
import { HandshakeDeadlines, nodeHandshakeTimeout } from '../../src/tls/deadline.ts';
import { clientHelloBytes } from '../support/clients.ts';

const DEADLINE_MS = 1000;
/** How long past the deadline a close may come on a slow, loaded machine. */
const MARGIN_MS = 10_000;
const SNI_WAIT_MS = 3000;

/** Resolves with the ms from `since` when the server closes `socket`. */
function closedAfter(socket: Socket, since: number): Promise<number> {
  return new Promise((resolve) => socket.once('close', () => resolve(Date.now() - since)));
}

async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)));
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

describe('handshake deadline', () => {
  let server: Server;
  let port: number;
  let context: SecureContext;
  let parents: boolean[];
  const accepted = new Set<Socket>();

  before(async () => {
    const pair = await createSelfSignedCertificate('deadline.test');
    context = createSecureContext({ cert: pair.certPem, key: pair.keyPem });
    parents = [];
    const deadlines = new HandshakeDeadlines({ timeoutMs: DEADLINE_MS });
    const sni = deadlines.pauseDuring(function (this: TLSSocket, name, cb) {
      // "slow.deadline.test" plays a name whose certificate is being issued.
      const wait = name.startsWith('slow.') ? SNI_WAIT_MS : 0;
      setTimeout(() => cb(null, context), wait);
    });
    server = createServer({ cert: pair.certPem, key: pair.keyPem, SNICallback: sni, handshakeTimeout: nodeHandshakeTimeout(DEADLINE_MS, SNI_WAIT_MS) }, (socket) => {
      parents.push(typeof (socket as TLSSocket & { _parent?: Socket })._parent?.destroy === 'function');
      socket.on('data', (d) => socket.write(d));
    });
    deadlines.watch(server);
    server.on('connection', (socket: Socket) => accepted.add(socket));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  after(async () => {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const socket of accepted) socket.destroy();
    await closed;
  });

  test('a socket that sends nothing is closed after the deadline, not before', async () => {
    const start = Date.now();
    const socket = tcpConnect(port, '127.0.0.1');
    socket.on('error', () => {});
    const ms = await within(closedAfter(socket, start), DEADLINE_MS + MARGIN_MS, 'silent socket closed');
    assert.ok(ms >= DEADLINE_MS - 50, `closed after ${ms} ms, before the ${DEADLINE_MS} ms deadline`);
  });

  test('a client dribbling its ClientHello (bytes keep arriving) is closed after the deadline', async () => {
    const hello = await clientHelloBytes('deadline.test');
    const start = Date.now();
    const socket = tcpConnect(port, '127.0.0.1');
    socket.on('error', () => {});
    const closed = closedAfter(socket, start);
    // Two bytes every 100 ms: the whole hello would take far longer than the deadline plus margin.
    let sent = 0;
    const drip = setInterval(() => {
      if (socket.destroyed || sent >= hello.length - 1) return;
      socket.write(hello.subarray(sent, sent + 2));
      sent += 2;
    }, 100);
    try {
      await within(closed, DEADLINE_MS + MARGIN_MS, 'dribbling socket closed');
    } finally {
      clearInterval(drip);
    }
  });

  test('an SNI decision longer than the deadline (issuance wait) is not counted: the handshake completes', async () => {
    const socket = connect({ host: '127.0.0.1', port, servername: 'slow.deadline.test', rejectUnauthorized: false });
    await within(new Promise<void>((resolve, reject) => {
      socket.once('secureConnect', resolve);
      socket.once('error', reject);
    }), SNI_WAIT_MS + MARGIN_MS, 'handshake with a slow SNI decision');
    socket.destroy();
  });

  test('an established connection outlives the deadline', async () => {
    const socket = connect({ host: '127.0.0.1', port, servername: 'deadline.test', rejectUnauthorized: false });
    socket.on('error', () => {});
    await new Promise<void>((resolve) => socket.once('secureConnect', resolve));
    await sleep(DEADLINE_MS * 2.5);
    assert.equal(socket.destroyed, false);
    const echoed = new Promise<string>((resolve) => socket.once('data', (d: Buffer) => resolve(d.toString())));
    socket.write('still here');
    assert.equal(await within(echoed, MARGIN_MS, 'echo'), 'still here');
    socket.destroy();
    assert.ok(parents.length > 0 && parents.every(Boolean), 'node:tls keeps the accepted socket as the TLS socket\'s _parent');
  });
});

describe('handshake deadline on the cache-hit path', () => {
  test('an SNI answer given before the callback returns (a cache hit) clears and sets no timer', () => {
    const deadlines = new HandshakeDeadlines({ timeoutMs: DEADLINE_MS });
    const server = new EventEmitter();
    deadlines.watch(server as unknown as Server);
    let destroyed = false;
    const raw = Object.assign(new EventEmitter(), { destroyed: false, destroy: () => (destroyed = true) });
    server.emit('connection', raw);
    const tls = { _parent: raw } as unknown as TLSSocket;
    const served = {} as SecureContext;
    const sni = deadlines.pauseDuring((_name, cb) => cb(null, served));
    const timerCalls: string[] = [];
    const { setTimeout: realSet, clearTimeout: realClear } = globalThis;
    globalThis.setTimeout = ((...args: Parameters<typeof realSet>) => {
      timerCalls.push('setTimeout');
      return realSet(...args);
    }) as typeof realSet;
    globalThis.clearTimeout = ((timer: Parameters<typeof realClear>[0]) => {
      timerCalls.push('clearTimeout');
      realClear(timer);
    }) as typeof realClear;
    let answer: SecureContext | undefined;
    try {
      sni.call(tls, 'hit.deadline.test', (_err, ctx) => (answer = ctx));
    } finally {
      globalThis.setTimeout = realSet;
      globalThis.clearTimeout = realClear;
    }
    assert.equal(answer, served);
    assert.deepEqual(timerCalls, []);
    // The deadline still runs, and ends with the handshake.
    server.emit('secureConnection', tls);
    assert.equal(destroyed, false);
  });
});
