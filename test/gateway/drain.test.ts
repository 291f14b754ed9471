// ConnectionDrain (src/gateway/drain.ts) on real node:http servers and raw sockets: a request in
// flight finishes (with Connection: close), an idle keep-alive connection closes within the
// grace, a request already on its way to an idle connection is still answered, and the
// deadline cuts what is left; on an HTTP/2 server, a GOAWAY lets the streams in flight finish.
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { connect as connectH2, createSecureServer } from 'node:http2';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { test } from 'node:test';
import { ConnectionDrain, IDLE_GRACE_MS } from '../../src/gateway/drain.ts';
import { multiNameCertificate } from '../support/certificates.ts';

/** A plain HTTP server, tracked by a drain: /slow answers after `slowMs`, anything else at once. */
async function drainedServer(slowMs: number): Promise<{ server: Server; port: number; drain: ConnectionDrain }> {
  const server = createServer((req, res) => {
    if (req.url === '/slow') setTimeout(() => res.end('slow'), slowMs);
    else res.end('fast');
  });
  const drain = new ConnectionDrain();
  drain.track(server, false);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port, drain };
}

/** A raw keep-alive client: send() writes a request, response() resolves with the next full one. */
function rawClient(port: number): { socket: Socket; send(path: string): void; response(): Promise<string>; closed: Promise<void> } {
  const socket = connect(port, '127.0.0.1');
  let buffer = '';
  let waiting: ((r: string) => void) | undefined;
  let failWaiting: ((err: Error) => void) | undefined;
  const take = () => {
    const end = buffer.indexOf('\r\n\r\n');
    if (end === -1 || !waiting) return;
    const length = Number(/content-length: (\d+)/i.exec(buffer.slice(0, end))?.[1] ?? 0);
    if (buffer.length < end + 4 + length) return;
    const response = buffer.slice(0, end + 4 + length);
    buffer = buffer.slice(end + 4 + length);
    const w = waiting;
    waiting = undefined;
    w(response);
  };
  socket.on('data', (d: Buffer) => {
    buffer += d.toString();
    take();
  });
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  // A connection closed before the whole response came fails the wait instead of hanging it.
  void closed.then(() => failWaiting?.(new Error(`connection closed before a full response; got: ${JSON.stringify(buffer)}`)));
  socket.on('error', () => {});
  return {
    socket,
    send: (path) => socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`),
    response: () =>
      new Promise((resolve, reject) => {
        waiting = resolve;
        failWaiting = reject;
        take();
        if (socket.destroyed && (waiting as unknown) === resolve) reject(new Error('connection already closed'));
      }),
    closed,
  };
}

test('a request in flight finishes with Connection: close; the drain resolves after it, no cut', async () => {
  const { port, drain } = await drainedServer(400);
  const client = rawClient(port);
  client.send('/slow');
  await new Promise((r) => setTimeout(r, 100));
  const drained = drain.drain(60_000);
  const response = await client.response();
  assert.match(response, /^HTTP\/1\.1 200/);
  assert.match(response, /connection: close/i);
  assert.match(response, /slow$/);
  await client.closed;
  assert.deepEqual(await drained, { cut: 0 });
});

test('an idle keep-alive connection closes within the grace, long before the deadline', async () => {
  const { port, drain } = await drainedServer(0);
  const client = rawClient(port);
  client.send('/');
  assert.match(await client.response(), /connection: keep-alive/i);
  let settled = false;
  const drained = drain.drain(120_000).finally(() => (settled = true));
  await client.closed;
  // The deadline is two minutes away; the drain ended with the idle connection.
  assert.deepEqual(await drained, { cut: 0 });
  assert.equal(settled, true);
});

test('a request sent on an idle keep-alive connection just after the drain began is answered, with Connection: close', async () => {
  const { port, drain } = await drainedServer(0);
  const client = rawClient(port);
  client.send('/');
  await client.response();
  const drained = drain.drain(120_000);
  // Well inside IDLE_GRACE_MS: the client had sent this before it could know of the drain.
  assert.ok(IDLE_GRACE_MS >= 500);
  client.send('/');
  const response = await client.response();
  assert.match(response, /^HTTP\/1\.1 200/);
  assert.match(response, /connection: close/i);
  await client.closed;
  assert.deepEqual(await drained, { cut: 0 });
});

test('the deadline cuts a request still in flight and reports it', async () => {
  const { port, drain } = await drainedServer(120_000);
  const client = rawClient(port);
  client.send('/slow');
  await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(await drain.drain(300), { cut: 1 });
  await client.closed;
});

test('after the drain began, new connections are refused (the listener is closed)', async () => {
  const { port, drain } = await drainedServer(0);
  await drain.drain(1000);
  const refused = await new Promise<string>((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => resolve('connected'));
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
  });
  assert.equal(refused, 'ECONNREFUSED');
});

test('HTTP/2: a stream in flight finishes, the session gets GOAWAY, and the drain resolves without a cut', async () => {
  const { certPem, keyPem } = await multiNameCertificate(['drain.test']);
  const server = createSecureServer({ cert: certPem, key: keyPem, allowHTTP1: true }, (req, res) => {
    if (req.url === '/slow') setTimeout(() => res.end('slow'), 400);
    else res.end('fast');
  });
  const drain = new ConnectionDrain();
  drain.track(server, true);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const session = connectH2(`https://127.0.0.1:${(server.address() as AddressInfo).port}`, { ca: certPem, servername: 'drain.test' });
  session.on('error', () => {});
  const goaway = new Promise<void>((resolve) => session.once('goaway', () => resolve()));
  const stream = session.request({ ':path': '/slow' });
  const body = new Promise<string>((resolve, reject) => {
    let text = '';
    stream.setEncoding('utf8');
    stream.on('data', (d: string) => (text += d));
    stream.on('end', () => resolve(text));
    stream.on('error', reject);
  });
  await new Promise((r) => setTimeout(r, 100));
  const started = Date.now();
  const drained = drain.drain(60_000);
  await goaway;
  assert.equal(await body, 'slow', 'the stream in flight completes');
  assert.deepEqual(await drained, { cut: 0 });
  // The session closes after its last stream: long before the 60 s deadline.
  assert.ok(Date.now() - started < 30_000);
  session.destroy();
});
