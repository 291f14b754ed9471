// Abuse limits on handshakes that would start an issuance (onDemand.limits): a token bucket per
// client IP and one for the whole process. Checked after the memory cache and storage missed,
// before policy, ask, DNS or the CA, so a flood of random SNI names costs a storage miss and a
// bucket check each. acme-tls/1 handshakes for a challenge this process does not hold in memory
// take the same tokens before their storage lookup (src/tls/handshake.ts step 2). Rejections
// are logged at most once per interval, with a count.
import type { LimitsConfig } from '../config/schema.ts';
import type { Logger } from '../util/log.ts';
import { KeyedTokenBuckets, TokenBucket, type BucketLimit } from '../util/ratelimit.ts';

/** Which bucket refused: the client address's, or the process's. */
export type LimitScope = 'client' | 'global';
/** admit()'s answer: go ahead, or which bucket is empty and why. */
export type LimitVerdict = { ok: true } | { ok: false; scope: LimitScope; reason: string };

/** The `onDemand.limits` keys the limits read; `unknownNameCache` bounds the client buckets kept (LRU). */
export type IssuanceLimitsConfig = Pick<LimitsConfig, 'perClient' | 'global' | 'unknownNameCache'>;

/** What the limits work with besides their config. */
export interface IssuanceLimitsDeps {
  logger: Logger;
  /** Least time between two "rate limited" log lines; default 10 s. */
  logIntervalMs?: number;
  /** Observes every rejection (metrics). */
  onLimited?: (scope: LimitScope) => void;
}

/** Token buckets per client IP and per process; `admit` never waits and never throws. */
export class IssuanceLimits {
  private clients: KeyedTokenBuckets | undefined;
  private global: TokenBucket | undefined;
  private readonly maxClients: number;
  private lastLogAt = -Infinity;
  private suppressed = { client: 0, global: 0 };

  constructor(
    config: IssuanceLimitsConfig,
    private readonly opts: IssuanceLimitsDeps,
  ) {
    this.maxClients = config.unknownNameCache;
    this.clients = config.perClient ? new KeyedTokenBuckets(config.perClient, config.unknownNameCache) : undefined;
    this.global = config.global ? new TokenBucket(config.global) : undefined;
  }

  /**
   * New rates from a reloaded config (SIGHUP). A bucket whose limit changed starts again full
   * under the new limit (a client's history under the old rate is dropped); an unchanged one
   * keeps its tokens. `unknownNameCache` keeps its start-up value.
   */
  reconfigure(config: Pick<LimitsConfig, 'perClient' | 'global'>): void {
    if (!sameLimit(this.clients?.limit, config.perClient)) this.clients = config.perClient ? new KeyedTokenBuckets(config.perClient, this.maxClients) : undefined;
    if (!sameLimit(this.global?.limit, config.global)) this.global = config.global ? new TokenBucket(config.global) : undefined;
  }

  /**
   * Takes a token from the client's bucket and the global one, or from neither: a client over
   * its own limit does not drain the global budget, and a global shortage does not cost the
   * client its tokens. `clientIp` undefined (no socket address) counts against the global only.
   */
  admit(domain: string, clientIp: string | undefined, now = Date.now()): LimitVerdict {
    const scope = this.emptyBucket(clientIp, now);
    if (scope === undefined) {
      if (this.clients && clientIp !== undefined) this.clients.take(clientIp, now);
      this.global?.take(now);
      return { ok: true };
    }
    this.limited(domain, clientIp, scope, now);
    return { ok: false, scope, reason: scope === 'client' ? `rate limited: client ${clientIp} is over onDemand.limits.perClient` : 'rate limited: over onDemand.limits.global' };
  }

  /**
   * Whether admit() would refuse now, without taking a token when it would not: a refusal is
   * counted and logged as admit()'s is. For refusing a connection before its TLS handshake
   * (tls/early-refusal.ts); one it does not refuse still goes through admit() later.
   */
  refuses(domain: string, clientIp: string | undefined, now = Date.now()): boolean {
    const scope = this.emptyBucket(clientIp, now);
    if (scope !== undefined) this.limited(domain, clientIp, scope, now);
    return scope !== undefined;
  }

  /** Budgets left now, for metrics: name → whole tokens. */
  budgets(now = Date.now()): Array<{ limit: string; remaining: number }> {
    return this.global ? [{ limit: 'issuance-global', remaining: this.global.remaining(now) }] : [];
  }

  /** Client buckets tracked (bounded by maxClients). */
  get trackedClients(): number {
    return this.clients?.size ?? 0;
  }

  /** The bucket admit() finds empty for this client now, or undefined when both have a token. */
  private emptyBucket(clientIp: string | undefined, now: number): LimitScope | undefined {
    if (this.clients && clientIp !== undefined && !this.clients.canTake(clientIp, now)) return 'client';
    if (this.global && !this.global.canTake(now)) return 'global';
    return undefined;
  }

  private limited(domain: string, clientIp: string | undefined, scope: LimitScope, now: number): void {
    this.opts.onLimited?.(scope);
    this.logLimited(domain, clientIp, scope, now);
  }

  private logLimited(domain: string, clientIp: string | undefined, scope: LimitScope, now: number): void {
    this.suppressed[scope]++;
    if (now - this.lastLogAt < (this.opts.logIntervalMs ?? 10_000)) return;
    const sinceLastLine = this.suppressed;
    this.suppressed = { client: 0, global: 0 };
    this.lastLogAt = now;
    this.opts.logger.warn(
      { domain, step: 'rate-limit', scope, client: clientIp, limitedSinceLastLine: sinceLastLine },
      'handshakes that would start an issuance (or look up a tls-alpn-01 challenge) are rate limited: fallback certificate, or a refused acme-tls/1 handshake',
    );
  }
}

function sameLimit(running: BucketLimit | undefined, next: BucketLimit | false): boolean {
  if (running === undefined || next === false) return running === undefined && next === false;
  return running.rate === next.rate && running.burst === next.burst;
}
