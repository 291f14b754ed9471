// The connection pools behind the proxy: one keep-alive undici Pool per upstream address.
//
//   1. an IP-literal upstream: one Pool for its origin, nothing to resolve
//   2. a host-name upstream: resolved (A and AAAA) with `proxy.resolve.resolvers`; with none, with
//      the system's resolver (getaddrinfo: /etc/hosts and search domains work as they did). The
//      first request waits for the first answer; after that no request waits on DNS: the answer
//      is refreshed every `proxy.resolve.interval` in the background while the upstream is in
//      use. A failed refresh keeps the last good answer (one warn line until one succeeds)
//   3. a registry upstream (a domain binding's): addresses `proxy.upstreamAllow` refuses are
//      dropped from every answer (none left: UPSTREAM_NOT_ALLOWED → 502); connections go to the
//      checked address itself, so a later DNS answer cannot lead anywhere unchecked
//   4. requests spread round robin over the addresses; an address that refuses connections is
//      skipped for a while (passive health, balancer.ts)
//   5. a request that got no response byte from an address that refused it is sent once more to
//      another address when repeating it is harmless (balancer.ts mayRetry)
//   6. a new answer: new requests go to the new addresses at once; Pools of addresses no longer
//      in it close gracefully (requests in flight finish)
//   7. an upstream unused for IDLE_INTERVALS refresh intervals (and at least IDLE_MIN_MS) stops
//      refreshing and is closed (templates can make one per tenant); its next use starts over
import { lookup as dnsLookup } from 'node:dns/promises';
import { isIP, type LookupFunction } from 'node:net';
import type { Dispatcher, Pool } from 'undici';
import { answerOf, createResolver } from '../net/resolver.ts';
import type { UpstreamTarget } from '../net/upstream.ts';
import type { Logger } from '../util/log.ts';
import { undici } from '../util/undici.ts';
import { AddressBalancer, isConnectFailure, mayRetry } from './balancer.ts';
import { errorCode } from './errors.ts';
import { UPSTREAM_NOT_ALLOWED, type UpstreamAllowList } from './upstream-allow.ts';

/** Default of `proxy.resolve.interval`. */
export const DEFAULT_RESOLVE_INTERVAL_MS = 15_000;
const IDLE_INTERVALS = 20;
const IDLE_MIN_MS = 300_000;
const DNS_TIMEOUT_MS = 2_000;

/** Answers the A and AAAA addresses of a host name; rejects (with a code) when there are none. */
export type AddressResolver = (hostname: string) => Promise<string[]>;

/**
 * Step 2's resolver: with `servers` ("ip:port"), A and AAAA queries to them; without, the
 * system's getaddrinfo (dns.lookup, all addresses).
 */
export function addressResolver(servers: readonly string[]): AddressResolver {
  if (servers.length === 0) {
    return async (hostname) => (await dnsLookup(hostname, { all: true })).map((a) => a.address);
  }
  const resolver = createResolver(servers, { timeoutMs: DNS_TIMEOUT_MS });
  return async (hostname) => {
    const [v4, v6] = await Promise.all([answerOf(resolver.resolve4(hostname)), answerOf(resolver.resolve6(hostname))]);
    const all = [...v4, ...v6];
    if (all.length === 0) throw Object.assign(new Error(`${hostname} has no A or AAAA record`), { code: 'ENOTFOUND' });
    return all;
  };
}

/** What dispatch needs from a pool: a Pool for IP literals, a ResolvedUpstream for host names. */
export interface UpstreamDispatcher {
  dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): unknown;
  /** For raw connections (WebSocket tunnels) to a host-name upstream: picks a checked address. */
  readonly lookup?: LookupFunction;
  close(): Promise<void>;
}

/** How UpstreamPools builds pools and resolves names. */
export interface UpstreamPoolsOptions {
  logger: Logger;
  /** Options of every per-address Pool (connections, time-outs); `connect` is set here for TLS. */
  pool: Pool.Options;
  /** For https upstreams: extra CAs, client certificate, rejectUnauthorized. */
  tls: object;
  connectTimeoutMs: number;
  /** `proxy.resolve.interval` (ms). */
  intervalMs: number;
  /** Step 2; default addressResolver([]) (the system's). */
  resolve?: AddressResolver;
}

interface Entry {
  dispatcher: UpstreamDispatcher;
  /** The route origin (or template) it serves, or 'registry', for retain(). */
  source: string;
}

/** The pools of the header, by upstream (and whether the allow-list applies). */
export class UpstreamPools {
  readonly #entries = new Map<string, Entry>();
  readonly #opts: UpstreamPoolsOptions;
  readonly #resolve: AddressResolver;

  constructor(opts: UpstreamPoolsOptions) {
    this.#opts = opts;
    this.#resolve = opts.resolve ?? addressResolver([]);
  }

  /**
   * The dispatcher for `target`. `allow`: a registry upstream, whose addresses it checks (step 3;
   * an IP literal is the caller's to check). `source`: what retain() keeps it by.
   */
  get(target: UpstreamTarget, allow: UpstreamAllowList | undefined, source: string): UpstreamDispatcher {
    const key = allow === undefined ? target.origin : `registry ${target.origin}`;
    const entry = this.#entries.get(key);
    if (entry !== undefined) return entry.dispatcher;
    const dispatcher: UpstreamDispatcher = isIP(target.hostname) !== 0
      ? this.#newPool(target, target.origin)
      : new ResolvedUpstream(target, {
          resolve: this.#resolve,
          allow,
          newPool: (address) => this.#newPool(target, originOf(target, address)),
          logger: this.#opts.logger,
          intervalMs: this.#opts.intervalMs,
          onIdle: (self) => {
            if (this.#entries.get(key)?.dispatcher === self) this.#entries.delete(key);
          },
        });
    this.#entries.set(key, { dispatcher, source });
    return dispatcher;
  }

  /** Closes (gracefully) every pool whose source `keep` refuses; registry ones are always kept. */
  retain(keep: (source: string) => boolean): void {
    for (const [key, entry] of this.#entries) {
      if (entry.source === 'registry' || keep(entry.source)) continue;
      this.#entries.delete(key);
      entry.dispatcher.close().catch((err: unknown) => this.#opts.logger.debug({ upstream: key, err }, 'closing unused pool failed'));
    }
  }

  /** Closes every pool after the requests in flight have finished. */
  async close(): Promise<void> {
    const entries = [...this.#entries.values()];
    this.#entries.clear();
    await Promise.all(entries.map((e) => e.dispatcher.close()));
  }

  #newPool(target: UpstreamTarget, origin: string): Pool {
    const options: Pool.Options = { ...this.#opts.pool };
    if (target.secure) {
      const connector = undici().buildConnector({ ...this.#opts.tls, timeout: this.#opts.connectTimeoutMs, allowH2: false });
      // undici would send the client's Host (or the address) as SNI and check the certificate
      // against it; use the upstream's own host name instead, and no SNI for IP literals.
      const servername = target.servername;
      options.connect = (opts, callback) => connector({ ...opts, servername }, callback);
    }
    return new (undici().Pool)(origin, options);
  }
}

/** 'http://app.internal:9011' at address '10.0.0.7' → 'http://10.0.0.7:9011'. */
function originOf(target: UpstreamTarget, address: string): string {
  const host = isIP(address) === 6 ? `[${address}]` : address;
  return `${target.secure ? 'https' : 'http'}://${host}:${target.port}`;
}

interface ResolvedDeps {
  resolve: AddressResolver;
  allow: UpstreamAllowList | undefined;
  newPool: (address: string) => Pool;
  logger: Logger;
  intervalMs: number;
  onIdle: (self: ResolvedUpstream) => void;
}

/** Steps 2-7 for one host-name upstream. */
class ResolvedUpstream implements UpstreamDispatcher {
  readonly #target: UpstreamTarget;
  readonly #deps: ResolvedDeps;
  readonly #balancer = new AddressBalancer();
  readonly #pools = new Map<string, Pool>();
  readonly #log: Logger;
  /** Why there is no address to use (no answer yet, none allowed, resolution failed). */
  #problem: Error | undefined;
  #resolving: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #usedSinceTick = true;
  #idleTicks = 0;
  #failing = false;
  #closed = false;

  constructor(target: UpstreamTarget, deps: ResolvedDeps) {
    this.#target = target;
    this.#deps = deps;
    this.#log = deps.logger.child({ upstream: target.origin });
    this.#timer = setInterval(() => this.#tick(), deps.intervalMs);
    this.#timer.unref();
  }

  dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    this.#usedSinceTick = true;
    if (this.#balancer.addresses.length > 0) {
      this.#send(options, handler, undefined);
      return true;
    }
    // Only until the first answer (or while there is none): the request waits for it.
    void this.#refresh().then(() => {
      if (this.#balancer.addresses.length > 0) this.#send(options, handler, undefined);
      else handler.onResponseError?.(null as unknown as Dispatcher.DispatchController, this.#problem ?? new Error('no address'));
    });
    return true;
  }

  readonly lookup: LookupFunction = ((_hostname: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) => {
    this.#usedSinceTick = true;
    const answer = (): void => {
      const address = this.#balancer.pick();
      if (address === undefined) return callback(this.#problem ?? new Error('no address'));
      const family = isIP(address);
      if (options.all === true) return callback(null, [{ address, family }]);
      return callback(null, address, family);
    };
    if (this.#balancer.addresses.length > 0) answer();
    else void this.#refresh().then(answer);
  }) as LookupFunction;

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    const pools = [...this.#pools.values()];
    this.#pools.clear();
    await Promise.all(pools.map((pool) => pool.close()));
  }

  /** Steps 4-5: one attempt on an address; `tried` is the address of the first attempt. */
  #send(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler, tried: string | undefined): void {
    const address = this.#balancer.pick(tried);
    if (address === undefined) {
      handler.onResponseError?.(null as unknown as Dispatcher.DispatchController, this.#problem ?? new Error('no address'));
      return;
    }
    let pool = this.#pools.get(address);
    if (pool === undefined) {
      pool = this.#deps.newPool(address);
      this.#pools.set(address, pool);
    }
    const retry = tried === undefined && mayRetry(options.method, options.body != null);
    pool.dispatch(options, new Attempt(handler, this.#balancer, address, retry ? () => this.#send(options, handler, address) : undefined));
  }

  #tick(): void {
    if (this.#usedSinceTick) {
      this.#usedSinceTick = false;
      this.#idleTicks = 0;
      void this.#refresh();
      return;
    }
    this.#idleTicks++;
    if (this.#idleTicks * this.#deps.intervalMs >= Math.max(IDLE_MIN_MS, IDLE_INTERVALS * this.#deps.intervalMs)) {
      this.#deps.onIdle(this);
      this.close().catch(() => {});
    }
  }

  /** Step 2: one resolution at a time; callers share it. Never rejects. */
  #refresh(): Promise<void> {
    this.#resolving ??= this.#resolveOnce().finally(() => {
      this.#resolving = undefined;
    });
    return this.#resolving;
  }

  async #resolveOnce(): Promise<void> {
    const { hostname, port } = this.#target;
    let addresses: string[];
    try {
      addresses = [...new Set(await this.#deps.resolve(hostname))];
    } catch (err) {
      if (this.#closed) return;
      const code = errorCode(err);
      if (this.#balancer.addresses.length === 0) this.#problem = Object.assign(new Error(`upstream ${hostname} could not be resolved: ${(err as Error).message}`), { code });
      if (!this.#failing) {
        this.#failing = true;
        this.#log.warn({ step: 'upstream-resolve', code, err: (err as Error).message, keeping: this.#balancer.addresses }, 'upstream host name could not be resolved; keeping the last answer');
      }
      return;
    }
    if (this.#closed) return;
    if (this.#failing) {
      this.#failing = false;
      this.#log.info({ step: 'upstream-resolve', addresses }, 'upstream host name resolves again');
    }
    const allow = this.#deps.allow;
    const allowed = allow === undefined ? addresses : addresses.filter((a) => allow.refusal(a, port) === undefined);
    if (allowed.length === 0) {
      const first = addresses[0] ?? '(none)';
      this.#problem = Object.assign(new Error(`upstream ${hostname} resolves to ${first}: ${allow?.refusal(first, port) ?? 'no address'}`), { code: UPSTREAM_NOT_ALLOWED });
      this.#log.warn({ step: 'upstream-allow', code: UPSTREAM_NOT_ALLOWED, addresses }, 'registry upstream resolves only to addresses that are not allowed');
    }
    this.#apply(allowed);
  }

  /** Step 6. */
  #apply(addresses: string[]): void {
    const before = this.#balancer.addresses;
    if (before.length === addresses.length && before.every((a) => addresses.includes(a))) return;
    this.#balancer.setAddresses(addresses);
    this.#log.info({ step: 'upstream-resolve', addresses, before }, 'upstream addresses changed');
    for (const [address, pool] of this.#pools) {
      if (addresses.includes(address)) continue;
      this.#pools.delete(address);
      pool.close().catch((err: unknown) => this.#log.debug({ address, err }, 'closing pool of a former address failed'));
    }
  }
}

/** One attempt of a request on one address: health bookkeeping and the retry of step 5. */
class Attempt implements Dispatcher.DispatchHandler {
  #answered = false;

  constructor(
    private readonly handler: Dispatcher.DispatchHandler,
    private readonly balancer: AddressBalancer,
    private readonly address: string,
    private readonly retry: (() => void) | undefined,
  ) {}

  onRequestStart(controller: Dispatcher.DispatchController, context: unknown): void {
    this.handler.onRequestStart?.(controller, context);
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>, statusMessage?: string): void {
    if (!this.#answered) {
      this.#answered = true;
      this.balancer.succeeded(this.address);
    }
    this.handler.onResponseStart?.(controller, statusCode, headers, statusMessage);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.handler.onResponseData?.(controller, chunk);
  }

  onResponseEnd(controller: Dispatcher.DispatchController, trailers: Record<string, string | string[] | undefined>): void {
    this.handler.onResponseEnd?.(controller, trailers);
  }

  onResponseError(controller: Dispatcher.DispatchController, err: Error): void {
    if (!this.#answered && isConnectFailure(errorCode(err))) {
      this.balancer.failed(this.address);
      if (this.retry !== undefined && this.balancer.addresses.some((a) => a !== this.address)) {
        this.retry();
        return;
      }
    }
    this.handler.onResponseError?.(controller, err);
  }
}
