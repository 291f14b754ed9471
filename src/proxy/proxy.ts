// Reverse proxy: routes each request by Host to an upstream origin and streams it through a
// keep-alive undici Pool per origin. Upgrade requests (WebSocket) go through a raw tunnel
// (see tunnel.ts).
import type { IncomingMessage, ServerResponse } from 'node:http';
import { STATUS_CODES } from '../util/node-http.ts';
import { isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import type { ConnectionOptions } from 'node:tls';
import { performance } from 'node:perf_hooks';
import type { Dispatcher } from 'undici';
import type { ProxyConfig } from '../config/schema.ts';
import { createAccessLog, type AccessLog, type Logger } from '../util/log.ts';
import { CidrSet } from '../net/cidr.ts';
import { clientAddress } from '../net/client-address.ts';
import { classifyUpstreamError, errorCode, failureBody, type FailureContext } from './errors.ts';
import { forwardRequestHeaders, parseRequestTarget, requestHasBody, returnResponseHeaders } from './headers.ts';
import { RouteTable, isTemplate, normalizeHost, type DynamicRoutes, type ProxyRoute, type RouteUpstream, type UpstreamTarget } from './routes.ts';
import { DEFAULT_RESOLVE_INTERVAL_MS, UpstreamPools, addressResolver, type AddressResolver, type UpstreamDispatcher } from './upstream-pool.ts';
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
 * 421 when a request's Host is not a name the connection's certificate covers (strict-host.ts);
 * `resolve` says how often and with which servers upstream host names are re-resolved
 * (upstream-pool.ts; default every 15 s with the system's resolver); `trustedProxies` (default
 * none) are the clients whose X-Forwarded-For/-Proto are kept (headers.ts).
 */
export type ProxySection = Partial<Pick<ProxyConfig, 'upstream' | 'routes' | 'upstreamTimeout' | 'accessLog' | 'strictHost' | 'resolve' | 'trustedProxies'>>;

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
  /** Resolves upstream host names (tests); default from `resolve.resolvers` (upstream-pool.ts). */
  resolveAddresses?: AddressResolver;
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
  readonly #pools: UpstreamPools;
  readonly #log: Logger;
  readonly #accessLog: boolean;
  readonly #upstreamTimeoutMs: number;
  readonly #connectTimeoutMs: number;
  readonly #bodyTimeoutMs: number;
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
    this.#tls = { ...opts.upstreamTls };
    this.#pools = new UpstreamPools({
      logger: this.#log,
      pool: {
        connections: positive(opts.maxConnectionsPerUpstream, DEFAULT_MAX_CONNECTIONS, 'maxConnectionsPerUpstream'),
        headersTimeout: this.#upstreamTimeoutMs,
        bodyTimeout: this.#bodyTimeoutMs,
        connectTimeout: this.#connectTimeoutMs,
        allowH2: false,
      },
      tls: this.#tls,
      connectTimeoutMs: this.#connectTimeoutMs,
      intervalMs: positive(config.resolve?.interval, DEFAULT_RESOLVE_INTERVAL_MS, 'proxy.resolve.interval'),
      resolve: opts.resolveAddresses ?? addressResolver(config.resolve?.resolvers ?? []),
    });
    this.#table = new RouteTable(config.routes ?? [], config.upstream);
    this.#dynamic = opts.dynamicRoutes;
    this.#strictHost = config.strictHost ? new StrictHostCheck(opts.fallbackCert) : undefined;
    this.#upstreamAllow = opts.upstreamAllow;
    const trustedProxies = new CidrSet(config.trustedProxies ?? [], 'proxy.trustedProxies');
    this.#tunnel = {
      trustedProxies,
      log: this.#log,
      accessLog: this.#accessLog,
      connectTimeoutMs: this.#connectTimeoutMs,
      upstreamTimeoutMs: this.#upstreamTimeoutMs,
      tls: this.#tls,
      open: new Set(),
    };
    this.#exchange = {
      trustedProxies,
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

  #handleRequest(req: IncomingMessage, res: ServerResponse, host: string, rawHost: string | undefined, route: RouteUpstream | undefined, start: number, fromRegistry: boolean): void {
    const exchange = new Exchange(this.#exchange, req, res, host, undefined, start);
    res.on('close', exchange.onClientClose);

    if (this.#closed) {
      exchange.sendError(503, '503 Service Unavailable: proxy is shutting down\n');
      return;
    }
    if (route === undefined) {
      this.#log.warn({ host: host || rawHost || null, method: req.method, path: pathOf(req.url) }, 'no upstream for host');
      exchange.sendError(502, `502 Bad Gateway: no upstream for host ${host || '(none)'}\n`);
      return;
    }
    const picked = this.#pick(route, host, fromRegistry);
    if (picked instanceof Promise) void picked.then((p) => this.#dispatch(req, exchange, p));
    else this.#dispatch(req, exchange, picked);
  }

  /** Sends the request to the picked upstream, or answers the reason there is none. */
  #dispatch(req: IncomingMessage, exchange: Exchange, picked: Picked): void {
    if ('status' in picked) {
      exchange.sendError(picked.status, picked.body);
      return;
    }
    const { target, dispatcher } = picked;
    exchange.target = target;
    const path = parseRequestTarget(req.url)?.path;
    if (path === undefined) {
      exchange.sendError(400, '400 Bad Request: invalid request target\n');
      return;
    }
    const options: Dispatcher.DispatchOptions & { servername?: string } = {
      path,
      method: req.method ?? 'GET',
      headers: forwardRequestHeaders(req, false, this.#exchange.trustedProxies),
      body: requestHasBody(req) ? req : null,
      // A constant per pool: undici would otherwise derive the TLS server name from each request's
      // Host and reconnect whenever it changes. The pool's connector picks the real SNI.
      servername: target.hostname,
    };
    dispatcher.dispatch(options, exchange);
  }

  /**
   * The upstream a route leads to for `host` and its dispatcher: a template is expanded (its
   * `{tenant}` from the host's registry binding, which may need a storage read: then a promise),
   * a registry upstream is checked against the allow-list. Or the answer to send instead.
   */
  #pick(route: RouteUpstream, host: string, fromRegistry: boolean): Picked | Promise<Picked> {
    if (!isTemplate(route)) return this.#picked(route, host, fromRegistry, route.origin);
    const tenant = route.needsTenant ? this.#dynamic?.tenant?.(host) : undefined;
    const expand = (value: string | undefined): Picked => {
      const expanded = route.expand({ host, tenant: value });
      if ('problem' in expanded) {
        this.#log.warn({ host, upstream: route.origin, step: 'upstream-template', code: 'UPSTREAM_TEMPLATE' }, `upstream template cannot be expanded: ${expanded.problem}`);
        return { status: 502, body: `502 Bad Gateway: no upstream for host ${host}: ${expanded.problem}\n` };
      }
      return this.#picked(expanded, host, false, route.origin);
    };
    return tenant instanceof Promise ? tenant.then(expand, () => expand(undefined)) : expand(tenant);
  }

  #picked(target: UpstreamTarget, host: string, fromRegistry: boolean, source: string): Picked {
    if (this.#closed) return { status: 503, body: '503 Service Unavailable: proxy is shutting down\n' };
    if (fromRegistry && this.#upstreamAllow !== undefined && this.#refused(target, host)) return { status: 502, body: failureBody(NOT_ALLOWED) };
    const allow = fromRegistry ? this.#upstreamAllow : undefined;
    return { target, dispatcher: this.#pools.get(target, allow, fromRegistry ? 'registry' : source) };
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

  #handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, host: string, rawHost: string | undefined, route: RouteUpstream | undefined, path: string, fromRegistry: boolean): void {
    if (this.#closed) {
      rejectUpgrade(socket, 503, '503 Service Unavailable: proxy is shutting down\n');
      return;
    }
    if (route === undefined) {
      this.#log.warn({ host: host || rawHost || null, method: req.method, path: pathOf(req.url), upgrade: req.headers.upgrade }, 'no upstream for host');
      rejectUpgrade(socket, 502, `502 Bad Gateway: no upstream for host ${host || '(none)'}\n`);
      return;
    }
    const tunnel = (picked: Picked): void => {
      if ('status' in picked) rejectUpgrade(socket, picked.status, picked.body);
      // A host-name upstream's connection goes to an address its pool picked (and checked).
      else openTunnel(this.#tunnel, req, socket, head, host, picked.target, path, picked.dispatcher.lookup);
    };
    const picked = this.#pick(route, host, fromRegistry);
    if (picked instanceof Promise) void picked.then(tunnel);
    else tunnel(picked);
  }

  /**
   * Replace the routing table. Takes effect for the next request; requests in flight finish on
   * the upstream they started with. Pools of upstreams no longer referenced are closed gracefully.
   * Throws (leaving the old table in place) when a route is invalid.
   */
  setRoutes(routes: ProxyRoute[], defaultUpstream?: string): void {
    const table = new RouteTable(routes, defaultUpstream);
    this.#table = table;
    this.#pools.retain((origin) => table.targets.has(origin));
  }

  /** The upstream origin a Host header value is routed to (normalised, e.g. 'http://10.0.0.2:8080'; a template as configured). */
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
    await this.#pools.close();
    this.#exchange.access?.flush();
  }

  /**
   * Step 1 of upstream-allow.ts for a registry upstream: true (logged) when its IP literal is
   * refused. A host name's addresses are checked by its pool at every resolution (step 2).
   */
  #refused(target: UpstreamTarget, host: string): boolean {
    if (isIP(target.hostname) === 0) return false;
    const refusal = this.#upstreamAllow?.refusal(target.hostname, target.port);
    if (refusal === undefined) return false;
    this.#log.warn({ host, upstream: target.origin, step: 'upstream-allow', code: UPSTREAM_NOT_ALLOWED }, `registry upstream refused: ${refusal}`);
    return true;
  }
}

/** Where a request goes (the upstream and its pools), or the answer it gets instead. */
type Picked = { target: UpstreamTarget; dispatcher: UpstreamDispatcher } | { status: 502 | 503; body: string };

interface ExchangeContext {
  /** `proxy.trustedProxies`, for the forwarded headers. */
  trustedProxies: CidrSet;
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
  /** Read now: once the response closes, a gone socket has no peer address left. */
  readonly #client: string | undefined;

  constructor(
    private readonly ctx: ExchangeContext,
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
    private readonly host: string,
    /** Set once the upstream is picked (a template is expanded first). */
    public target: UpstreamTarget | undefined,
    private readonly start: number,
  ) {
    this.#client = ctx.access ? clientAddress(req.socket) : undefined;
  }

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
    const ms = performance.now() - this.start;
    this.ctx.onResponse?.({ status: res.statusCode, ms, upstream: this.target?.origin ?? null, aborted: this.#clientGone });
    const access = this.ctx.access;
    if (!access) return;
    access.request({
      host: this.host || null,
      client: this.#client ?? null,
      method: this.req.method,
      path: pathOf(this.req.url),
      status: res.statusCode,
      upstream: this.target?.origin ?? null,
      ms: Math.round(ms * 10) / 10,
      bytes: this.#bytes,
      error: this.#errorCode,
      aborted: this.#clientGone,
    });
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
