// Upgrade requests (WebSocket, h2c, ...): a raw TCP/TLS connection to the upstream carrying the
// rewritten request head, then bytes piped both ways. No WebSocket parsing happens here.
import type { IncomingMessage } from 'node:http';
import { STATUS_CODES } from '../util/node-http.ts';
import { connect as netConnect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import type { Logger } from '../log.ts';
import { classifyUpstreamError, errorCode, failureBody } from './errors.ts';
import { forwardRequestHeaders } from './headers.ts';
import type { UpstreamTarget } from './routes.ts';

export interface TunnelContext {
  log: Logger;
  accessLog: boolean;
  connectTimeoutMs: number;
  /** Time allowed between sending the request head and the upstream's first response bytes. */
  upstreamTimeoutMs: number;
  tls: Pick<ConnectionOptions, 'ca' | 'cert' | 'key' | 'rejectUnauthorized'>;
  /** Upstream sockets of live tunnels, destroyed by ReverseProxy.close(). */
  open: Set<Socket>;
}

/** How long a closing side may take to flush before it is destroyed. */
const CLOSE_GRACE_MS = 5_000;

function noop(): void {}

/** Answer an upgrade request with a plain HTTP error on the raw client socket, then close it. */
export function rejectUpgrade(socket: Duplex, status: number, body: string): void {
  socket.on('error', noop);
  if (socket.destroyed || !socket.writable) {
    socket.destroy();
    return;
  }
  const head =
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\n` +
    'Content-Type: text/plain; charset=utf-8\r\n' +
    `Content-Length: ${Buffer.byteLength(body)}\r\n` +
    'Cache-Control: no-store\r\n' +
    'Connection: close\r\n\r\n';
  endThenDestroy(socket, head + body);
}

/** End the writable side (after `data`), destroy once flushed or after a grace period. */
function endThenDestroy(socket: Duplex, data?: string): void {
  if (socket.destroyed) return;
  const timer = setTimeout(() => socket.destroy(), CLOSE_GRACE_MS);
  timer.unref();
  socket.end(data, () => {
    clearTimeout(timer);
    socket.destroy();
  });
}

/** 'HTTP/1.1 101 Switching Protocols...' → 101; undefined when it does not look like a status line. */
function parseStatus(buf: Buffer): number | undefined {
  if (buf.length < 12 || buf.toString('latin1', 0, 7) !== 'HTTP/1.') return undefined;
  const status = Number(buf.toString('latin1', 9, 12));
  return Number.isInteger(status) ? status : undefined;
}

type Phase = 'connecting' | 'waiting' | 'open' | 'done';

export function openTunnel(
  ctx: TunnelContext,
  req: IncomingMessage,
  client: Duplex,
  head: Buffer,
  host: string,
  target: UpstreamTarget,
): void {
  const start = performance.now();
  const path = req.url ?? '/';
  const fields = forwardRequestHeaders(req, true);
  let requestHead = `${req.method ?? 'GET'} ${path} HTTP/1.1\r\n`;
  for (let i = 0; i < fields.length; i += 2) requestHead += `${fields[i]}: ${fields[i + 1]}\r\n`;
  requestHead += '\r\n';

  const upstream: Socket = target.secure
    ? tlsConnect({
        ...ctx.tls,
        host: target.hostname,
        port: target.port,
        servername: target.servername,
        ALPNProtocols: ['http/1.1'],
      })
    : netConnect({ host: target.hostname, port: target.port });
  ctx.open.add(upstream);

  let phase: Phase = 'connecting';
  let status: number | undefined;
  let errorName: string | undefined;
  let sniff: Buffer | null = null;
  let timer = setTimeout(() => onTimeout(), ctx.connectTimeoutMs);
  const logFields = { host, upstream: target.origin, path: pathOf(path), upgrade: req.headers.upgrade };

  const onTimeout = (): void => {
    const connecting = phase === 'connecting';
    const err = Object.assign(new Error(connecting ? 'connect timeout' : 'response timeout'), {
      code: connecting ? 'UND_ERR_CONNECT_TIMEOUT' : 'UND_ERR_HEADERS_TIMEOUT',
    });
    fail(err);
  };

  /** Upstream trouble: before any response byte reached the client → 502/504; after → close both. */
  const fail = (err: Error): void => {
    if (phase === 'done') return;
    clearTimeout(timer);
    const failure = classifyUpstreamError(err, ctx);
    errorName = failure.code;
    if (phase === 'open') {
      phase = 'done';
      ctx.log.warn({ ...logFields, code: failure.code, err: err.message }, 'upstream tunnel failed');
      upstream.destroy();
      client.destroy();
      return;
    }
    phase = 'done';
    status = failure.status;
    ctx.log.warn({ ...logFields, code: failure.code, err: err.message, status: failure.status }, `upstream ${failure.reason}`);
    client.unpipe(upstream);
    upstream.destroy();
    rejectUpgrade(client, failure.status, failureBody(failure));
  };

  /** First response bytes: forward them, read the status, then hand over to pipe(). */
  const onData = (chunk: Buffer): void => {
    if (phase === 'waiting') {
      phase = 'open';
      clearTimeout(timer);
    }
    client.write(chunk);
    sniff = sniff === null ? chunk : Buffer.concat([sniff, chunk]);
    if (sniff.length < 12) return;
    status = parseStatus(sniff);
    sniff = null;
    upstream.off('data', onData);
    if (status !== 101) {
      // Not switched: the upstream answered as plain HTTP. Stop relaying the client's bytes so
      // that further requests cannot be smuggled through this tunnel without the proxy's headers,
      // and let the upstream close once its answer is out.
      client.unpipe(upstream);
      upstream.end();
    }
    upstream.pipe(client);
  };

  client.on('error', noop);
  client.on('close', () => {
    if (phase !== 'open') {
      if (phase !== 'done') errorName = 'CLIENT_GONE';
      phase = 'done';
      clearTimeout(timer);
      upstream.destroy();
    } else {
      endThenDestroy(upstream);
    }
  });

  upstream.once(target.secure ? 'secureConnect' : 'connect', () => {
    if (phase !== 'connecting') return;
    phase = 'waiting';
    clearTimeout(timer);
    timer = setTimeout(() => onTimeout(), ctx.upstreamTimeoutMs);
    upstream.setNoDelay(true);
    upstream.write(requestHead);
    if (head.length > 0) upstream.write(head);
    upstream.on('data', onData);
    client.pipe(upstream);
  });
  upstream.on('error', (err) => {
    if (phase === 'open') {
      ctx.log.debug({ ...logFields, code: errorCode(err) }, 'upstream tunnel error');
      errorName ??= errorCode(err);
      client.destroy();
      return;
    }
    fail(err);
  });
  upstream.on('end', () => {
    if (phase === 'connecting' || phase === 'waiting') {
      fail(Object.assign(new Error('upstream closed before answering'), { code: 'UND_ERR_SOCKET' }));
    }
  });
  upstream.on('close', () => {
    ctx.open.delete(upstream);
    clearTimeout(timer);
    if (phase === 'open') {
      phase = 'done';
      endThenDestroy(client);
    } else if (phase !== 'done') {
      fail(Object.assign(new Error('upstream closed before answering'), { code: 'UND_ERR_SOCKET' }));
    }
    if (!ctx.accessLog) return;
    const entry: Record<string, unknown> = {
      host: host || null,
      method: req.method,
      path: pathOf(path),
      status: status ?? null,
      upstream: target.origin,
      ms: Math.round((performance.now() - start) * 10) / 10,
      bytes: upstream.bytesRead,
      upgrade: req.headers.upgrade,
    };
    if (errorName !== undefined) entry.error = errorName;
    ctx.log.info(entry, 'access');
  });
}

function pathOf(url: string): string {
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}
