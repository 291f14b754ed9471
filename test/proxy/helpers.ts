// Shared helpers for the proxy tests: a front server wired to a ReverseProxy, a small HTTP
// client, a self-signed certificate and a log capture.
import { execFileSync } from 'node:child_process';
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
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import type { Logger } from '../../src/log.ts';
import type { ReverseProxy } from '../../src/proxy/proxy.ts';

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
  /** Use https with this CA and SNI name. */
  tls?: { ca: string; servername: string };
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
      ? httpsRequest({ ...common, ca: opts.tls.ca, servername: opts.tls.servername })
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

/** A throwaway self-signed certificate for localhost, *.example.test and 127.0.0.1. */
export function selfSignedCert(): TestCert {
  const dir = mkdtempSync(join(tmpdir(), 'certgate-proxy-test-'));
  try {
    const keyPath = join(dir, 'key.pem');
    const certPath = join(dir, 'cert.pem');
    execFileSync(
      'openssl',
      [
        'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
        '-keyout', keyPath, '-out', certPath, '-days', '1', '-subj', '/CN=localhost',
        '-addext', 'subjectAltName=DNS:localhost,DNS:example.test,DNS:*.example.test,IP:127.0.0.1',
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
