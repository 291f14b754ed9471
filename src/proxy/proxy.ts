// Reverse proxy: routes each request by Host to an upstream origin and streams it through a
// keep-alive undici Pool per origin. Upgrade requests (WebSocket) go through a raw tunnel
// (see tunnel.ts).
import type { IncomingMessage, ServerResponse } from 'node:http';
import { STATUS_CODES } from '../util/node-http.ts';
import { isIP, type LookupFunction } from 'node:net';
import type { Duplex } from 'node:stream';
import type { ConnectionOptions } from 'node:tls';
import { performance } from 'node:perf_hooks';
import type { Dispatcher, Pool } from 'undici';
import { undici } from '../util/undici.ts';
import type { ProxyConfig } from '../config/schema.ts';
import { createAccessLog, type AccessLog, type Logger } from '../util/log.ts';
import { classifyUpstreamError, errorCode, failureBody, type FailureContext } from './errors.ts';
import { forwardRequestHeaders, parseRequestTarget, requestHasBody, returnResponseHeaders } from './headers.ts';
import { RouteTable, normalizeHost, type DynamicRoutes, type ProxyRoute, type UpstreamTarget } from './routes.ts';
import { StrictHostCheck } from './strict-host.ts';
import { UPSTREAM_NOT_ALLOWED, type UpstreamAllowList } from './upstream-allow.ts';
import { checkUpgrade, openTunnel, rejectUpgrade, type TunnelContext } from './tunnel.ts';

export type { DynamicRoutes, ProxyRoute, UpstreamTarget } from './routes.ts';
export { RouteTable, normalizeHost, parseUpstream } from './routes.ts';

/** TLS settings for https upstreams (both the pools and WebSocket tunnels). */
export type UpstreamTlsOptions = Pick<ConnectionOptions, 'ca' | 'cert' | 'key' | 'rejectUnauthorized'>;

/**
 * The `proxy` keys the proxy reads, as the schema outputs them; each may be left out (unit
 * tests): `upstream` serves requests no route matches (without it: 502 'no upstream');
 * `upstreamTimeout` (ms, default 60 s → 504) runs from sending the request to the response
 * headers; `accessLog` (default true) writes one JSON line per request; `strictHost` answers
 * 421 when a request's Host is not a name the connection's certificate covers (strict-host.ts).
 */
export type ProxySection = Partial<Pick<ProxyConfig, 'upstream' | 'routes' | 'upstreamTimeout' | 'accessLog' | 'strictHost'>>;

/** What the proxy works with besides its config, and tuning the config does not expose. */
export interface ProxyDeps {
  logger: Logger;
  /** Run-time per-host routes (the domain registry); they win over `routes`. */
  dynamicRoutes?: DynamicRoutes;
  /** With `strictHost`: the fallback certificate (PEM); connections served it cover no name. */
  fallbackCert?: string;
  /**
   * Addresses upstreams from `dynamicRoutes` (the domain registry) may point at (built from
   * `proxy.upstreamAllow`, see upstream-allow.ts); a refused one gets 502. Unset: not checked
   * (configured routes never are).
   */
  upstreamAllow?: UpstreamAllowList;
  /** Observes every finished (or abandoned) proxied request, e.g. for metrics. Must not throw. */
  onResponse?: (response: ProxiedResponse) => void;
  /** Default 10 s → 504. */
  connectTimeoutMs?: number;
  /**
   * Longest pause between two chunks of an upstream response body before the response is cut
   * off. 0 (the default) disables it, so long-polling and server-sent events work; time spent
   * waiting on a slow client (back-pressure) never counts.
   */
  upstreamBodyTimeoutMs?: number;
  /** Keep-alive pool size per upstream origin; default 128. */
  maxConnectionsPerUpstream?: number;
  /** For https upstreams: extra CAs, client certificate, or rejectUnauthorized: false. */
  upstreamTls?: UpstreamTlsOptions;
}

/** One proxied request as the onResponse observer sees it. */
export interface ProxiedResponse {
  status: number;
  /** From the request's arrival to the end (or abort) of the response. */
  ms: number;
  /** The upstream origin, or null when none was chosen (no route, shutting down). */
  upstream: string | null;
  aborted: boolean;
}

const MISDIRECTED = "421 Misdirected Request: this connection's certificate does not cover the requested host\n";
const NOT_ALLOWED = classifyUpstreamError({ code: UPSTREAM_NOT_ALLOWED }, { connectTimeoutMs: 0, upstreamTimeoutMs: 0 });
const DEFAULT_UPSTREAM_TIMEOUT_MS = 60_000;
const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
const DEFAULT_MAX_CONNECTIONS = 128;

/**
 * Routes each request by Host (registry routes first, then `routes`, then `upstream`) and
 * streams it to the upstream; answers 502/503/504 itself when it cannot. After close(),
 * requests get 503 and the pools are gone.
 */
export class ReverseProxy {
  #table: RouteTable;
  readonly #dynamic: DynamicRoutes | undefined;
  readonly #pools = new Map<string, Pool>();
  readonly #log: Logger;
  readonly #accessLog: boolean;
  readonly #upstreamTimeoutMs: number;
  readonly #connectTimeoutMs: number;
  readonly #bodyTimeoutMs: number;
  readonly #maxConnections: number;
  readonly #tls: UpstreamTlsOptions;
  readonly #tunnel: TunnelContext;
  readonly #exchange: ExchangeContext;
  readonly #strictHost: StrictHostCheck | undefined;
  readonly #upstreamAllow: UpstreamAllowList | undefined;
  #closed = false;

  constructor(config: ProxySection, opts: ProxyDeps) {
    this.#log = opts.logger.child({ component: 'proxy' });
    this.#accessLog = config.accessLog ?? true;
    this.#upstreamTimeoutMs = positive(config.upstreamTimeout, DEFAULT_UPSTREAM_TIMEOUT_MS, 'proxy.upstreamTimeout');
    this.#connectTimeoutMs = positive(opts.connectTimeoutMs, DEFAULT_CONNECT_TIMEOUT_MS, 'connectTimeoutMs');
    this.#bodyTimeoutMs = opts.upstreamBodyTimeoutMs ?? 0;
    if (!Number.isFinite(this.#bodyTimeoutMs) || this.#bodyTimeoutMs < 0) {
      throw new Error('upstreamBodyTimeoutMs must be a non-negative number');
    }
    this.#maxConnections = positive(opts.maxConnectionsPerUpstream, DEFAULT_MAX_CONNECTIONS, 'maxConnectionsPerUpstream');
    this.#tls = { ...opts.upstreamTls };
    this.#table = new RouteTable(config.routes ?? [], config.upstream);
    this.#dynamic = opts.dynamicRoutes;
    this.#strictHost = config.strictHost ? new StrictHostCheck(opts.fallbackCert) : undefined;
    this.#upstreamAllow = opts.upstreamAllow;
    this.#tunnel = {
      log: this.#log,
      accessLog: this.#accessLog,
      connectTimeoutMs: this.#connectTimeoutMs,
      upstreamTimeoutMs: this.#upstreamTimeoutMs,
      tls: this.#tls,
      open: new Set(),
    };
    this.#exchange = {
      log: this.#log,
      accessLog: this.#accessLog,
      access: this.#accessLog ? createAccessLog(opts.logger, { component: 'proxy' }) : null,
      failure: { connectTimeoutMs: this.#connectTimeoutMs, upstreamTimeoutMs: this.#upstreamTimeoutMs },
      ...(opts.onResponse ? { onResponse: opts.onResponse } : {}),
    };
  }

  /** Attach as the 'request' listener of an http/https server. */
  handleRequest(req: IncomingMessage, res: ServerResponse): void {
    const start = performance.now();
    const rawHost = req.headers.host;
    const host = rawHost === undefined ? '' : normalizeHost(rawHost);
    if (this.#strictHost?.covers(req.socket, host) === false) {
      const exchange = new Exchange(this.#exchange, req, res, host, undefined, start);
      res.on('close', exchange.onClientClose);
      exchange.sendError(421, MISDIRECTED);
      return;
    }
    const dynamic = host === '' ? undefined : this.#dynamic?.lookup(host);
    if (dynamic instanceof Promise) {
      // Not in memory yet: the request body stays paused (nothing reads it) until we dispatch.
      void dynamic.then((target) => this.#handleRequest(req, res, host, rawHost, target ?? this.#table.lookup(host), start, target !== undefined));
      return;
    }
    this.#handleRequest(req, res, host, rawHost, dynamic ?? this.#table.lookup(host), start, dynamic !== undefined);
  }

  #handleRequest(req: IncomingMessage, res: ServerResponse, host: string, rawHost: string | undefined, target: UpstreamTarget | undefined, start: number, fromRegistry: boolean): void {
    const exchange = new Exchange(this.#exchange, req, res, host, target, start);
    res.on('close', exchange.onClientClose);

    if (this.#closed) {
      exchange.sendError(503, '503 Service Unavailable: proxy is shutting down\n');
      return;
    }
    if (target === undefined) {
      this.#log.warn({ host: host || rawHost || null, method: req.method, path: pathOf(req.url) }, 'no upstream for host');
      exchange.sendError(502, `502 Bad Gateway: no upstream for host ${host || '(none)'}\n`);
      return;
    }
    const lookup = fromRegistry ? this.#admit(target, host) : undefined;
    if (lookup === null) {
      exchange.sendError(502, failureBody(NOT_ALLOWED));
      return;
    }
    const path = parseRequestTarget(req.url)?.path;
    if (path === undefined) {
      exchange.sendError(400, '400 Bad Request: invalid request target\n');
      return;
    }
    const options: Dispatcher.DispatchOptions & { servername?: string } = {
      path,
      method: req.method ?? 'GET',
      headers: forwardRequestHeaders(req, false),
      body: requestHasBody(req) ? req : null,
      // A constant per pool: undici would otherwise derive the TLS server name from each request's
      // Host and reconnect whenever it changes. The pool's connector picks the real SNI.
      servername: target.hostname,
    };
    this.#pool(target, lookup).dispatch(options, exchange);
  }

  /**
   * Attach as the 'upgrade' listener (WebSocket and any other Upgrade except h2c). Requests with
   * a body or an absolute-form target naming another host are refused (400, see tunnel.ts); the
   * client's bytes reach the upstream only after it answered 101.
   */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const rawHost = req.headers.host;
    const host = rawHost === undefined ? '' : normalizeHost(rawHost);
    const check = checkUpgrade(req, host);
    if (!check.ok) {
      this.#log.debug({ host: host || rawHost || null, method: req.method, path: pathOf(req.url), upgrade: req.headers.upgrade, step: 'upgrade', status: check.status }, `upgrade refused: ${check.reason}`);
      rejectUpgrade(socket, check.status, `${check.status} ${STATUS_CODES[check.status]}: ${check.reason}\n`);
      return;
    }
    if (this.#strictHost?.covers(req.socket, host) === false) {
      rejectUpgrade(socket, 421, MISDIRECTED);
      return;
    }
    const path = check.path;
    const dynamic = host === '' ? undefined : this.#dynamic?.lookup(host);
    if (dynamic instanceof Promise) {
      void dynamic.then((target) => this.#handleUpgrade(req, socket, head, host, rawHost, target ?? this.#table.lookup(host), path, target !== undefined));
      return;
    }
    this.#handleUpgrade(req, socket, head, host, rawHost, dynamic ?? this.#table.lookup(host), path, dynamic !== undefined);
  }

  #handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, host: string, rawHost: string | undefined, target: UpstreamTarget | undefined, path: string, fromRegistry: boolean): void {
    if (this.#closed) {
      rejectUpgrade(socket, 503, '503 Service Unavailable: proxy is shutting down\n');
      return;
    }
    if (target === undefined) {
      this.#log.warn({ host: host || rawHost || null, method: req.method, path: pathOf(req.url), upgrade: req.headers.upgrade }, 'no upstream for host');
      rejectUpgrade(socket, 502, `502 Bad Gateway: no upstream for host ${host || '(none)'}\n`);
      return;
    }
    const lookup = fromRegistry ? this.#admit(target, host) : undefined;
    if (lookup === null) {
      rejectUpgrade(socket, 502, failureBody(NOT_ALLOWED));
      return;
    }
    openTunnel(this.#tunnel, req, socket, head, host, target, path, lookup);
  }

  /**
   * Replace the routing table. Takes effect for the next request; requests in flight finish on
   * the upstream they started with. Pools of upstreams no longer referenced are closed gracefully.
   * Throws (leaving the old table in place) when a route is invalid.
   */
  setRoutes(routes: ProxyRoute[], defaultUpstream?: string): void {
    const table = new RouteTable(routes, defaultUpstream);
    this.#table = table;
    for (const [origin, pool] of this.#pools) {
      if (!table.targets.has(origin)) {
        this.#pools.delete(origin);
        pool.close().catch((err: unknown) => this.#log.debug({ upstream: origin, err }, 'closing unused pool failed'));
      }
    }
  }

  /** The upstream origin a Host header value is routed to (normalised, e.g. 'http://10.0.0.2:8080'). */
  resolveUpstream(host: string): string | undefined {
    const normalized = normalizeHost(host);
    const dynamic = this.#dynamic?.lookup(normalized);
    return (dynamic instanceof Promise ? undefined : dynamic)?.origin ?? this.#table.lookup(normalized)?.origin;
  }

  /**
   * Stop accepting work: new requests get 503, open WebSocket tunnels are destroyed, and the
   * upstream pools close after the requests in flight have finished.
   */
  async close(): Promise<void> {
    this.#closed = true;
    for (const socket of this.#tunnel.open) socket.destroy();
    this.#tunnel.open.clear();
    const pools = [...this.#pools.values()];
    this.#pools.clear();
    await Promise.all(pools.map((pool) => pool.close()));
    this.#exchange.access?.flush();
  }

  /**
   * Steps 1-2 of upstream-allow.ts for a registry upstream: null when its IP literal is refused
   * (logged here), the allow-list's DNS lookup for a host name, undefined when nothing more is
   * needed (an allowed IP literal, or no allow-list).
   */
  #admit(target: UpstreamTarget, host: string): LookupFunction | undefined | null {
    const allow = this.#upstreamAllow;
    if (allow === undefined) return undefined;
    if (isIP(target.hostname) === 0) return allow.lookupFor(target.port);
    const refusal = allow.refusal(target.hostname, target.port);
    if (refusal === undefined) return undefined;
    this.#log.warn({ host, upstream: target.origin, step: 'upstream-allow', code: UPSTREAM_NOT_ALLOWED }, `registry upstream refused: ${refusal}`);
    return null;
  }

  /** The pool for `target`; with `lookup` (a registry host name) one of its own that resolves through it. */
  #pool(target: UpstreamTarget, lookup?: LookupFunction): Pool {
    const key = lookup === undefined ? target.origin : `registry ${target.origin}`;
    let pool = this.#pools.get(key);
    if (pool !== undefined) return pool;
    const options: Pool.Options = {
      connections: this.#maxConnections,
      headersTimeout: this.#upstreamTimeoutMs,
      bodyTimeout: this.#bodyTimeoutMs,
      connectTimeout: this.#connectTimeoutMs,
      allowH2: false,
    };
    if (target.secure || lookup !== undefined) {
      const connector = undici().buildConnector({ ...this.#tls, timeout: this.#connectTimeoutMs, allowH2: false, ...(lookup ? { lookup } : {}) });
      // undici would send the client's Host as SNI (and check the certificate against it); use
      // the upstream's own host name instead, and no SNI for IP literals.
      const servername = target.servername;
      options.connect = target.secure ? (opts, callback) => connector({ ...opts, servername }, callback) : connector;
    }
    pool = new (undici().Pool)(target.origin, options);
    this.#pools.set(key, pool);
    return pool;
  }
}

interface ExchangeContext {
  log: Logger;
  accessLog: boolean;
  /** The access log's own cheap path (see createAccessLog); null when it is off. */
  access: AccessLog | null;
  failure: FailureContext;
  onResponse?: (response: ProxiedResponse) => void;
}

/** One proxied request: undici dispatch handler + bookkeeping for the client side. */
class Exchange implements Dispatcher.DispatchHandler {
  #controller: Dispatcher.DispatchController | null = null;
  #clientGone = false;
  #waitingDrain = false;
  #bytes = 0;
  #errorCode: string | undefined;

  constructor(
    private readonly ctx: ExchangeContext,
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
    private readonly host: string,
    private readonly target: UpstreamTarget | undefined,
    private readonly start: number,
  ) {}

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    if (this.#clientGone) controller.abort(new ClientGoneError());
  }

  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Record<string, string | string[] | undefined>,
    statusMessage?: string,
  ): void {
    if (statusCode < 200) return; // 1xx informational; the final response follows
    if (this.#clientGone || this.res.destroyed) {
      controller.abort(new ClientGoneError());
      return;
    }
    const out = returnResponseHeaders(controller.rawHeaders, headers);
    // Throws on values Node refuses to send; undici turns that into onResponseError → 502.
    // HTTP/2 has no reason phrase (Node warns when given one).
    if (statusMessage && this.req.httpVersionMajor !== 2) this.res.writeHead(statusCode, statusMessage, out);
    else this.res.writeHead(statusCode, out);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.#bytes += chunk.length;
    if (!this.res.write(chunk) && !this.#waitingDrain) {
      this.#waitingDrain = true;
      controller.pause();
      this.res.once('drain', this.#onDrain);
    }
  }

  onResponseEnd(): void {
    this.res.end();
  }

  onResponseError(_controller: Dispatcher.DispatchController | null, err: Error): void {
    // A client that disconnects mid-upload shows up here first, as an error of the request body.
    if (this.#clientGone || this.req.socket.destroyed) {
      this.#clientGone = true;
      this.ctx.log.debug({ host: this.host, upstream: this.target?.origin, code: errorCode(err) }, 'client went away');
      return;
    }
    const failure = classifyUpstreamError(err, this.ctx.failure);
    this.#errorCode = failure.code;
    const upstream = this.target?.origin;
    if (this.res.headersSent) {
      this.ctx.log.warn({ host: this.host, upstream, code: failure.code, err: err.message, path: pathOf(this.req.url) }, 'upstream response aborted');
      this.res.destroy();
      return;
    }
    this.ctx.log.warn({ host: this.host, upstream, code: failure.code, err: err.message, status: failure.status, path: pathOf(this.req.url) }, `upstream ${failure.reason}`);
    this.sendError(failure.status, failureBody(failure));
  }

  sendError(status: number, body: string): void {
    const res = this.res;
    if (res.headersSent || res.destroyed) return;
    res.writeHead(status, {
      'content-type': 'text/plain; charset=utf-8',
      'content-length': Buffer.byteLength(body),
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
    });
    res.end(body);
  }

  readonly #onDrain = (): void => {
    this.#waitingDrain = false;
    this.#controller?.resume();
  };

  /** res 'close': after a complete response, or when the client went away first. */
  readonly onClientClose = (): void => {
    const res = this.res;
    if (!res.writableFinished) {
      this.#clientGone = true;
      this.#controller?.abort(new ClientGoneError());
    }
    this.ctx.onResponse?.({ status: res.statusCode, ms: performance.now() - this.start, upstream: this.target?.origin ?? null, aborted: this.#clientGone });
    const access = this.ctx.access;
    if (!access) return;
    const entry: Record<string, unknown> = {
      host: this.host || null,
      method: this.req.method,
      path: pathOf(this.req.url),
      status: res.statusCode,
      upstream: this.target?.origin ?? null,
      ms: Math.round((performance.now() - this.start) * 10) / 10,
      bytes: this.#bytes,
    };
    if (this.#errorCode !== undefined) entry.error = this.#errorCode;
    if (this.#clientGone) entry.aborted = true;
    access.write(entry);
  };
}

class ClientGoneError extends Error {
  readonly code = 'CLIENT_GONE';
  constructor() {
    super('client closed the connection');
  }
}

function positive(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} must be a positive number`);
  return value;
}

/** Path without the query string (queries often carry tokens; keep them out of logs). */
function pathOf(url: string | undefined): string | undefined {
  if (url === undefined) return undefined;
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}
