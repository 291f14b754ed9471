// Upgrade requests (WebSocket and the like): a raw TCP/TLS connection to the upstream carrying
// the rewritten request head, then bytes piped both ways. No WebSocket parsing happens here.
// The client's bytes after its request head reach the upstream only once the upstream switched
// protocols: before that they would be read by the upstream as HTTP, i.e. as a second request
// the proxy never saw (request smuggling).
//
//   checkUpgrade (ReverseProxy.handleUpgrade, before any routing work):
//     1. `Upgrade: h2c` (or `h2`) → 400: HTTP/2 behind the proxy's back is never tunnelled
//     2. a body (Content-Length > 0, any Transfer-Encoding) → 400: it would be read as a request
//     3. the target: origin-form as is; absolute-form becomes origin-form when its host is the
//        Host header's, else 400 (routing follows Host; the upstream must not see another name)
//   openTunnel:
//     4. connect and send the rewritten request head only; the client socket is not read, and
//        the bytes that came with the request head (`head`) are held
//     5. read the upstream's response head (bounded; within upstreamTimeout); 1xx other than
//        101 are passed on and the next head awaited
//     6. 101 → the head (and what followed it) to the client, then the held bytes upstream,
//        then bytes piped both ways
//     7. any other status → that answer to the client with `Connection: close`; the client's
//        further bytes are read and dropped (never forwarded), and both connections close once
//        the upstream has sent its answer
import type { IncomingMessage } from 'node:http';
import { STATUS_CODES } from '../util/node-http.ts';
import { connect as netConnect, type LookupFunction, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import type { Logger } from '../util/log.ts';
import type { CidrSet } from '../net/cidr.ts';
import { clientAddress } from '../net/client-address.ts';
import { classifyUpstreamError, errorCode, failureBody } from './errors.ts';
import { forwardRequestHeaders, hasRequestBody, parseRequestTarget } from './headers.ts';
import { normalizeHost, type UpstreamTarget } from './routes.ts';

/** What openTunnel needs from the proxy; one per ReverseProxy. */
export interface TunnelContext {
  /** `proxy.trustedProxies`, for the forwarded headers. */
  trustedProxies: CidrSet;
  log: Logger;
  accessLog: boolean;
  connectTimeoutMs: number;
  /** Time allowed between sending the request head and the upstream's complete response head. */
  upstreamTimeoutMs: number;
  tls: Pick<ConnectionOptions, 'ca' | 'cert' | 'key' | 'rejectUnauthorized'>;
  /** Upstream sockets of live tunnels, destroyed by ReverseProxy.close(). */
  open: Set<Socket>;
}

/** How long a closing side may take to flush before it is destroyed. */
const CLOSE_GRACE_MS = 5_000;
/** Largest upstream response head accepted (Node's own limit is 16 KiB). */
const MAX_RESPONSE_HEAD_BYTES = 64 * 1024;
const HEAD_END = Buffer.from('\r\n\r\n');

function noop(): void {}

/** The outcome of checkUpgrade: the origin-form path to send upstream, or a 400 and why. */
export type UpgradeCheck = { ok: true; path: string } | { ok: false; status: 400; reason: string };

/**
 * Steps 1-3: may this upgrade request be tunnelled at all? `host` is the normalised Host header
 * ('' when absent). A refusal is the client's fault (400); nothing has been sent anywhere yet.
 */
export function checkUpgrade(req: IncomingMessage, host: string): UpgradeCheck {
  const upgrade = req.headers.upgrade ?? '';
  for (const offered of upgrade.split(',')) {
    const protocol = offered.trim().split('/')[0]!.toLowerCase();
    if (protocol === 'h2c' || protocol === 'h2') return { ok: false, status: 400, reason: `upgrade to ${protocol} is not supported` };
  }
  if (hasRequestBody(req.headers)) return { ok: false, status: 400, reason: 'an upgrade request must not have a body' };
  const target = parseRequestTarget(req.url);
  if (target === undefined) return { ok: false, status: 400, reason: 'invalid request target' };
  if (target.authority !== undefined && normalizeHost(target.authority) !== host) {
    return { ok: false, status: 400, reason: 'the request target names another host than the Host header' };
  }
  return { ok: true, path: target.path };
}

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
  // Whatever else the client sent is read and dropped, so that closing does not reset the
  // connection before the client has read this answer.
  socket.resume();
  endThenDestroy(socket, head + body);
}

/** End the writable side (after `data`), destroy once flushed or after a grace period. */
function endThenDestroy(socket: Duplex, data?: string | Buffer): void {
  if (socket.destroyed) return;
  const timer = setTimeout(() => socket.destroy(), CLOSE_GRACE_MS);
  timer.unref();
  socket.end(data, () => {
    clearTimeout(timer);
    socket.destroy();
  });
}

/** 'HTTP/1.1 101 Switching Protocols' → 101; undefined when it is not an HTTP/1.x status line. */
function parseStatus(head: string): number | undefined {
  const m = /^HTTP\/1\.[01] (\d{3})(?: |\r|$)/.exec(head);
  return m ? Number(m[1]) : undefined;
}

/** A response head (without its final CRLF CRLF) with Connection/Keep-Alive replaced by `Connection: close`. */
function closingHead(head: string): string {
  const lines = head.split('\r\n');
  const out = [lines[0]!];
  let dropping = false;
  for (const line of lines.slice(1)) {
    const folded = line.startsWith(' ') || line.startsWith('\t');
    if (!folded) dropping = /^(?:connection|keep-alive)[ \t]*:/i.test(line);
    if (!dropping) out.push(line);
  }
  out.push('Connection: close');
  return out.join('\r\n') + '\r\n\r\n';
}

type Phase = 'connecting' | 'waiting' | 'open' | 'answered' | 'done';

/**
 * Steps 4-7 for an upgrade request checkUpgrade accepted: `path` is its origin-form target,
 * `head` the bytes that arrived after the request head, `lookup` the DNS lookup for the
 * upstream connection (the allow-list's, for registry upstreams). Owns both sockets from here on: every
 * outcome ends in an answer to the client and both sockets closed, and one access-log line.
 */
export function openTunnel(
  ctx: TunnelContext,
  req: IncomingMessage,
  client: Duplex,
  head: Buffer,
  host: string,
  target: UpstreamTarget,
  path: string,
  lookup?: LookupFunction,
): void {
  const upstream: Socket = target.secure
    ? tlsConnect({
        ...ctx.tls,
        host: target.hostname,
        port: target.port,
        servername: target.servername,
        ALPNProtocols: ['http/1.1'],
        ...(lookup ? { lookup } : {}),
      })
    : netConnect({ host: target.hostname, port: target.port, ...(lookup ? { lookup } : {}) });
  ctx.open.add(upstream);
  new Tunnel(ctx, { req, client, head, host, target, path, upstream }).wire();
}

/** One upgrade request's two sockets and what it asked for. */
interface TunnelEnds {
  req: IncomingMessage;
  client: Duplex;
  head: Buffer;
  host: string;
  target: UpstreamTarget;
  path: string;
  upstream: Socket;
}

/** The state of one tunnel, from connecting to done; the handlers below move it along. */
class Tunnel {
  private readonly start = performance.now();
  /** Read now: at the access-log line the client socket may be gone, and its peer address with it. */
  private readonly client: string | undefined;
  private phase: Phase = 'connecting';
  private status: number | undefined;
  private errorName: string | undefined;
  /** Upstream bytes not yet handled while its response head is awaited. */
  private pending: Buffer = Buffer.alloc(0);
  private timer: NodeJS.Timeout;
  private readonly logFields: Record<string, unknown>;
  private readonly onData = (chunk: Buffer): void => this.collectHead(chunk);

  constructor(
    private readonly ctx: TunnelContext,
    private readonly ends: TunnelEnds,
  ) {
    this.timer = setTimeout(() => this.onTimeout(), ctx.connectTimeoutMs);
    this.client = ctx.accessLog ? clientAddress(ends.req.socket) : undefined;
    this.logFields = { host: ends.host, upstream: ends.target.origin, path: pathOf(ends.path), upgrade: ends.req.headers.upgrade, step: 'upgrade' };
  }

  wire(): void {
    const { client, upstream, target } = this.ends;
    client.on('error', noop);
    client.on('close', () => this.onClientClose());
    upstream.once(target.secure ? 'secureConnect' : 'connect', () => this.onConnect());
    upstream.on('error', (err) => this.onUpstreamError(err));
    upstream.on('end', () => {
      if (this.phase === 'connecting' || this.phase === 'waiting') {
        this.fail(Object.assign(new Error('upstream closed before answering'), { code: 'UND_ERR_SOCKET' }));
      }
    });
    upstream.on('close', () => this.onUpstreamClose());
  }

  private onTimeout(): void {
    const connecting = this.phase === 'connecting';
    const err = Object.assign(new Error(connecting ? 'connect timeout' : 'response timeout'), {
      code: connecting ? 'UND_ERR_CONNECT_TIMEOUT' : 'UND_ERR_HEADERS_TIMEOUT',
    });
    this.fail(err);
  }

  /** Upstream trouble: before any response byte reached the client → 502/504; after → close both. */
  private fail(err: Error): void {
    if (this.phase === 'done') return;
    clearTimeout(this.timer);
    const failure = classifyUpstreamError(err, this.ctx);
    this.errorName = failure.code;
    const { client, upstream } = this.ends;
    if (this.phase === 'open' || this.phase === 'answered') {
      this.phase = 'done';
      this.ctx.log.warn({ ...this.logFields, code: failure.code, err: err.message }, 'upstream tunnel failed');
      upstream.destroy();
      client.destroy();
      return;
    }
    this.phase = 'done';
    this.status = failure.status;
    this.ctx.log.warn({ ...this.logFields, code: failure.code, err: err.message, status: failure.status }, `upstream ${failure.reason}`);
    upstream.destroy();
    rejectUpgrade(client, failure.status, failureBody(failure));
  }

  /** Step 4: connected; send the request head and wait for the answer. */
  private onConnect(): void {
    if (this.phase !== 'connecting') return;
    const { upstream, req, path } = this.ends;
    this.phase = 'waiting';
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.onTimeout(), this.ctx.upstreamTimeoutMs);
    upstream.setNoDelay(true);
    const fields = forwardRequestHeaders(req, true, this.ctx.trustedProxies);
    let requestHead = `${req.method ?? 'GET'} ${path} HTTP/1.1\r\n`;
    for (let i = 0; i < fields.length; i += 2) requestHead += `${fields[i]}: ${fields[i + 1]}\r\n`;
    // latin1: header values keep the bytes the client sent (Node decoded them as latin1).
    upstream.write(requestHead + '\r\n', 'latin1');
    upstream.on('data', this.onData);
  }

  /** Step 5: collect the upstream's response heads; hand over at the final one. */
  private collectHead(chunk: Buffer): void {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    for (;;) {
      const end = this.pending.indexOf(HEAD_END);
      if (end === -1) {
        if (this.pending.length > MAX_RESPONSE_HEAD_BYTES) {
          this.fail(Object.assign(new Error('response head too large'), { code: 'UND_ERR_HEADERS_OVERFLOW' }));
        }
        return;
      }
      const responseHead = this.pending.toString('latin1', 0, end);
      const code = parseStatus(responseHead);
      if (code === undefined) {
        this.fail(Object.assign(new Error('invalid response status line'), { code: 'UPSTREAM_INVALID_RESPONSE' }));
        return;
      }
      const rest = this.pending.subarray(end + HEAD_END.length);
      if (code >= 100 && code < 200 && code !== 101) {
        // Informational (100, 103): pass it on, the final answer follows.
        this.ends.client.write(this.pending.subarray(0, end + HEAD_END.length));
        this.pending = rest;
        continue;
      }
      clearTimeout(this.timer);
      this.ends.upstream.off('data', this.onData);
      this.status = code;
      if (code === 101) this.switched(this.pending);
      else this.answered(responseHead, rest);
      this.pending = Buffer.alloc(0);
      return;
    }
  }

  /** Step 6: the upstream switched protocols; from now on bytes flow both ways untouched. */
  private switched(response: Buffer): void {
    const { client, upstream, head } = this.ends;
    this.phase = 'open';
    client.write(response);
    if (head.length > 0) upstream.write(head);
    upstream.pipe(client);
    client.pipe(upstream);
  }

  /** Step 7: a plain HTTP answer; it is the last thing on both connections. */
  private answered(responseHead: string, rest: Buffer): void {
    const { client, upstream } = this.ends;
    this.phase = 'answered';
    client.resume(); // read and drop: never forwarded, and no reset before the answer is read
    client.write(closingHead(responseHead), 'latin1');
    if (rest.length > 0) client.write(rest);
    upstream.end();
    upstream.pipe(client);
  }

  private onClientClose(): void {
    if (this.phase === 'open') {
      endThenDestroy(this.ends.upstream);
      return;
    }
    if (this.phase !== 'done' && this.phase !== 'answered') this.errorName = 'CLIENT_GONE';
    this.phase = 'done';
    clearTimeout(this.timer);
    this.ends.upstream.destroy();
  }

  private onUpstreamError(err: Error): void {
    if (this.phase === 'open' || this.phase === 'answered') {
      this.ctx.log.debug({ ...this.logFields, code: errorCode(err) }, 'upstream tunnel error');
      this.errorName ??= errorCode(err);
      this.ends.client.destroy();
      return;
    }
    this.fail(err);
  }

  private onUpstreamClose(): void {
    const { upstream, client } = this.ends;
    this.ctx.open.delete(upstream);
    clearTimeout(this.timer);
    if (this.phase === 'open' || this.phase === 'answered') {
      this.phase = 'done';
      endThenDestroy(client);
    } else if (this.phase !== 'done') {
      this.fail(Object.assign(new Error('upstream closed before answering'), { code: 'UND_ERR_SOCKET' }));
    }
    if (this.ctx.accessLog) this.logAccess();
  }

  private logAccess(): void {
    const { req, host, path, target, upstream } = this.ends;
    const entry: Record<string, unknown> = {
      host: host || null,
      client: this.client ?? null,
      method: req.method,
      path: pathOf(path),
      status: this.status ?? null,
      upstream: target.origin,
      ms: Math.round((performance.now() - this.start) * 10) / 10,
      bytes: upstream.bytesRead,
      upgrade: req.headers.upgrade,
    };
    if (this.errorName !== undefined) entry.error = this.errorName;
    this.ctx.log.info(entry, 'access');
  }
}

function pathOf(url: string): string {
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}
