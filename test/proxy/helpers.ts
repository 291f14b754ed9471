// Shared helpers for the proxy tests: a front server wired to a ReverseProxy, a small HTTP
// client, a self-signed certificate and a log capture.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import {
  createServer as createHttpServer,
  request as httpRequest,
  type Agent,
  type IncomingHttpHeaders,
  type OutgoingHttpHeaders,
  type Server,
} from 'node:http';
import { createServer as createHttpsServer, request as httpsRequest } from 'node:https';
import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { pino } from 'pino';
import type { Logger } from '../../src/util/log.ts';
import type { TestContext } from 'node:test';
import { silentLogger } from '../../src/util/log.ts';
import { ReverseProxy, type ProxyDeps, type ProxySection } from '../../src/proxy/proxy.ts';
import { decodeFrames, encodeFrame, startUpstream, type FakeUpstream, type FakeUpstreamOptions } from '../support/upstream.ts';

export interface Front {
  server: Server;
  port: number;
  close(): Promise<void>;
}

/** An http (or, with `tls`, https) server on 127.0.0.1:0 handing requests and upgrades to `proxy`. */
export async function startFront(proxy: ReverseProxy, tls?: { key: string; cert: string }): Promise<Front> {
  const server: Server = tls
    ? (createHttpsServer({ key: tls.key, cert: tls.cert }) as unknown as Server)
    : createHttpServer();
  server.on('request', (req, res) => proxy.handleRequest(req, res));
  server.on('upgrade', (req, socket, head) => proxy.handleUpgrade(req, socket, head));
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0 }, () => resolve());
  });
  return {
    server,
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      }),
  };
}

export interface Reply {
  status: number;
  statusMessage: string;
  headers: IncomingHttpHeaders;
  rawHeaders: string[];
  body: Buffer;
}

export interface SendOptions {
  host?: string;
  method?: string;
  path?: string;
  headers?: OutgoingHttpHeaders;
  body?: Buffer | string;
  agent?: Agent | false;
  /** Use https with this CA and SNI name; `anyName`: accept a certificate for another name (a fallback). */
  tls?: { ca: string; servername: string; anyName?: boolean };
}

/** One request to 127.0.0.1:port; resolves with the whole response. */
export function send(port: number, opts: SendOptions = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const headers: OutgoingHttpHeaders = { ...opts.headers };
    if (opts.host !== undefined) headers.host = opts.host;
    const common = {
      host: '127.0.0.1',
      port,
      method: opts.method ?? 'GET',
      path: opts.path ?? '/',
      headers,
      agent: opts.agent ?? false,
    };
    const req = opts.tls
      ? httpsRequest({ ...common, ca: opts.tls.ca, servername: opts.tls.servername, ...(opts.tls.anyName ? { checkServerIdentity: () => undefined } : {}) })
      : httpRequest(common);
    req.on('error', reject);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          statusMessage: res.statusMessage ?? '',
          headers: res.headers,
          rawHeaders: res.rawHeaders,
          body: Buffer.concat(chunks),
        }),
      );
    });
    req.end(opts.body);
  });
}

export interface TestCert {
  key: string;
  cert: string;
}

/** A throwaway self-signed certificate, by default for localhost, example.test, *.example.test and 127.0.0.1. */
export function selfSignedCert(subjectAltName = 'DNS:localhost,DNS:example.test,DNS:*.example.test,IP:127.0.0.1'): TestCert {
  const dir = mkdtempSync(join(tmpdir(), 'certgate-proxy-test-'));
  try {
    const keyPath = join(dir, 'key.pem');
    const certPath = join(dir, 'cert.pem');
    execFileSync(
      'openssl',
      [
        'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
        '-keyout', keyPath, '-out', certPath, '-days', '1', '-subj', '/CN=localhost',
        '-addext', `subjectAltName=${subjectAltName}`,
      ],
      { stdio: 'ignore', timeout: 10_000 },
    );
    return { key: readFileSync(keyPath, 'utf8'), cert: readFileSync(certPath, 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface LogCapture {
  logger: Logger;
  lines: Record<string, unknown>[];
}

/** A debug-level pino logger whose JSON lines are kept in memory. */
export function captureLogs(): LogCapture {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line.trim() !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
      }
      cb();
    },
  });
  const logger = pino({ level: 'debug', formatters: { level: (label) => ({ level: label }) } }, sink);
  return { logger, lines };
}

/** Poll `check` until it returns true or `ms` elapse. */
export async function waitFor(check: () => boolean, ms = 3000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A proxy's config keys and deps in one object (the logger defaults to a silent one). */
export type ProxyTestOptions = ProxySection & Partial<ProxyDeps>;

/** A ReverseProxy from one object: the config keys go to its config, the rest to its deps. */
export function newProxy(opts: ProxyTestOptions): ReverseProxy {
  const { upstream, routes, upstreamTimeout, accessLog, strictHost, resolve, trustedProxies, ...deps } = opts;
  return new ReverseProxy({ upstream, routes, upstreamTimeout, accessLog, strictHost, resolve, trustedProxies }, { logger: silentLogger(), ...deps });
}

/** Start a proxy and a front server for it; both are closed when the test ends. */
export async function proxied(t: TestContext, opts: ProxyTestOptions, tls?: TestCert): Promise<{ proxy: ReverseProxy; front: Front }> {
  const proxy = newProxy(opts);
  const front = await startFront(proxy, tls);
  t.after(async () => {
    await front.close();
    await proxy.close();
  });
  return { proxy, front };
}

/** An upstream that records every plain request it parses; see recordingUpstream. */
export interface RecordingUpstream extends FakeUpstream {
  /** 'METHOD url' of every request that reached the request handler, in order. */
  readonly requests: string[];
  /** Resolves once `n` requests arrived. */
  arrived(n: number): Promise<void>;
  /** Resolves once no connection to it is open any more (so no further request can arrive). */
  idle(): Promise<void>;
}

/**
 * An upstream that does not switch protocols (unless `onUpgrade` is given): Node treats an
 * upgrade request as a plain one and keeps the connection alive, so a second request on the same
 * connection would be parsed and answered too. Answers `plain <method> <url>` after `delayMs`.
 */
export async function recordingUpstream(t: TestContext, delayMs = 0, onUpgrade?: FakeUpstreamOptions['onUpgrade']): Promise<RecordingUpstream> {
  const requests: string[] = [];
  const up = await upstream(
    t,
    (req, res) => {
      requests.push(`${req.method} ${req.url}`);
      req.resume();
      setTimeout(() => res.end(`plain ${req.method} ${req.url}`), delayMs);
    },
    onUpgrade ? { onUpgrade } : {},
  );
  let open = 0;
  up.server.on('connection', (socket: Socket) => {
    open++;
    socket.on('close', () => open--);
  });
  return Object.assign(up, {
    requests,
    arrived: (n: number) => waitFor(() => requests.length >= n, 10_000, `${n} upstream requests`),
    idle: () => waitFor(() => open === 0, 10_000, 'upstream connections to close'),
  });
}

/** A byte-level upstream; see rawUpstream. */
export interface RawUpstream {
  origin: string;
  /** Connections accepted so far. */
  readonly connections: number;
  /** Every byte received, per connection, in order. */
  readonly received: Buffer[];
  /** The request lines ('GET /x HTTP/1.1') anywhere in the bytes received: what any HTTP server could have parsed. */
  requestLines(): string[];
  /** Resolves once no connection to it is open any more. */
  idle(): Promise<void>;
}

/**
 * An upstream that never switches protocols and records every byte it is sent: after the first
 * request head on a connection it waits `delayMs`, answers `200 plain` (keep-alive), and keeps
 * reading until the peer closes. Unlike a Node server, which stops parsing after an Upgrade
 * request's head, it sees whatever was forwarded.
 */
export async function rawUpstream(t: TestContext, delayMs = 0): Promise<RawUpstream> {
  const received: Buffer[] = [];
  const sockets = new Set<Socket>();
  let connections = 0;
  const server = createNetServer((socket) => {
    connections++;
    sockets.add(socket);
    const index = received.push(Buffer.alloc(0)) - 1;
    let answered = false;
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
    socket.on('end', () => socket.end());
    socket.on('data', (chunk: Buffer) => {
      received[index] = Buffer.concat([received[index]!, chunk]);
      if (answered || received[index].indexOf('\r\n\r\n') === -1) return;
      answered = true;
      setTimeout(() => {
        if (socket.writable) socket.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nplain');
      }, delayMs);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0 }, () => resolve());
  });
  t.after(
    () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      }),
  );
  return {
    origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    get connections() {
      return connections;
    },
    received,
    requestLines: () => received.flatMap((bytes) => bytes.toString('latin1').match(/^[!-~]+ [^ \r\n]+ HTTP\/1\.[01]\r?$/gm) ?? []).map((l) => l.replace(/\r$/, '')),
    idle: () => waitFor(() => sockets.size === 0, 10_000, 'upstream connections to close'),
  };
}

/** startUpstream, closed when the test ends. */
export async function upstream(t: TestContext, ...args: Parameters<typeof startUpstream>): Promise<FakeUpstream> {
  const u = await startUpstream(...args);
  t.after(() => u.close());
  return u;
}

/** A WebSocket opening handshake for `host` (GET /ws). */
export function handshake(host: string): string {
  return (
    `GET /ws HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`
  );
}

/** Read until the peer closes; resolves with everything as latin1 text. */
export function readAll(socket: Socket | TLSSocket): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
    socket.on('error', reject);
    setTimeout(() => reject(new Error('peer did not close')), 5000).unref();
  });
}

/**
 * Hand-made WebSocket client: send the handshake (passed through `rewrite`; and, with `together`,
 * the first masked text frame in the same write), expect 101, return the text of the first frame received.
 */
export async function webSocketRoundTrip(socket: Socket, host: string, text: string, together = false, rewrite = (head: string) => head): Promise<string> {
  const frame = encodeFrame(1, Buffer.from(text), randomBytes(4));
  const request = rewrite(handshake(host));
  if (together) socket.write(Buffer.concat([Buffer.from(request), frame]));
  else socket.write(request);
  let buf = Buffer.alloc(0);
  let headDone = false;
  let sentFrame = together;
  return new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no WebSocket reply')), 5000);
    socket.on('error', reject);
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (!headDone) {
        const end = buf.indexOf('\r\n\r\n');
        if (end === -1) return;
        const head = buf.subarray(0, end).toString('latin1');
        if (!head.startsWith('HTTP/1.1 101')) {
          clearTimeout(timer);
          reject(new Error(`handshake failed: ${head}`));
          return;
        }
        headDone = true;
        buf = buf.subarray(end + 4);
        if (!sentFrame) {
          sentFrame = true;
          socket.write(frame);
        }
      }
      const { frames } = decodeFrames(buf);
      const first = frames[0];
      if (first) {
        clearTimeout(timer);
        socket.write(encodeFrame(8, Buffer.from([0x03, 0xe8]), randomBytes(4)));
        resolve(first.payload.toString('utf8'));
      }
    });
  });
}
