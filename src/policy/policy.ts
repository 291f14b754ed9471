// Who may get a certificate. A name is approved when it matches `onDemand.allow`, the `ask`
// endpoint answers 2xx, or (with `onDemand.registry`) it has an active binding in the domain
// registry; a registry binding that is disabled denies whatever the others say; with neither configured nothing is approved (a gateway must never turn
// arbitrary SNI into CA orders). Decisions are cached, both ways, in a bounded cache, and
// concurrent questions about one name share a single ask request.
// With `onDemand.dns` set, an approved name must also pass the DNS ownership check (dns.ts):
// the sources say who may have a certificate, DNS says whether it can be validated now.
import { undici } from '../util/undici.ts';
import type { LimitsConfig, OnDemandConfig } from '../config/schema.ts';
import type { Logger } from '../util/log.ts';
import { LruCache } from '../util/lru.ts';
import { LogSampler } from '../util/log-sampler.ts';
import type { DnsOwnershipCheck } from './dns.ts';
import { HostPatternSet } from '../net/patterns.ts';

/**
 * The answer to "may this name have a certificate?": allowed, and by which source, or denied and why.
 */
export type PolicyDecision = { allowed: true; source: 'allow' | 'ask' | 'registry' } | { allowed: false; reason: string };

/**
 * A policy source that may know a name: the domain registry (`onDemand.registry`). known+allowed
 * approves; known+denied denies whatever the other sources say; unknown leaves it to them.
 */
export interface KnownNamesSource {
  decide(name: string): Promise<{ known: false } | { known: true; allowed: true } | { known: true; allowed: false; reason: string }>;
}

/**
 * The `onDemand` keys the policy reads, as the schema outputs them (durations in ms):
 * `allow`, `ask`, `askTimeout`, `askCacheTtl`, `askDenyCacheTtl`, and `limits.unknownNameCache`
 * (the most ask decisions kept in memory).
 */
export type PolicyConfig = Pick<OnDemandConfig, 'allow' | 'ask' | 'askTimeout' | 'askCacheTtl' | 'askDenyCacheTtl'> & { limits: Pick<LimitsConfig, 'unknownNameCache'> };

/** What the policy works with besides its config. */
export interface PolicyDeps {
  logger: Logger;
  /** A gate every approval must also pass (built from `onDemand.dns`). */
  dns?: DnsOwnershipCheck;
  /** The domain registry; pass it only when `onDemand.registry` is on. */
  registry?: KnownNamesSource;
}

/**
 * The policy of the header: decide() caches each answer (allowTtlMs/denyTtlMs) and never orders
 * anything; forget() drops a name's cached answer (a binding changed).
 */
export class OnDemandPolicy {
  private allow: HostPatternSet;
  private readonly decisions: LruCache<string, PolicyDecision>;
  private readonly pending = new Map<string, Promise<PolicyDecision>>();
  /** `ask` denials are what a flood of random names makes: sampled (every approval is logged). */
  private readonly askDeniedLog = new LogSampler({ maxPerInterval: 10, intervalMs: 10_000 });

  constructor(
    private config: PolicyConfig,
    private readonly deps: PolicyDeps,
  ) {
    this.allow = new HostPatternSet(config.allow);
    this.decisions = new LruCache(config.limits.unknownNameCache);
  }

  /**
   * A reloaded config (SIGHUP): `allow`, `ask` and its timings apply from the next decision.
   * Cached ask answers are dropped (made under the old rules); `limits.unknownNameCache` keeps
   * its start-up value (the cache is not rebuilt).
   */
  reconfigure(config: PolicyConfig): void {
    this.config = config;
    this.allow = new HostPatternSet(config.allow);
    this.decisions.clear();
  }

  /** `name` must be normalised (see tls/names.ts). Never throws: errors deny. */
  async decide(name: string): Promise<PolicyDecision> {
    const decision = await this.decideBySources(name);
    if (!decision.allowed || !this.deps.dns) return decision;
    const dns = await this.deps.dns.check(name);
    return dns.ok ? decision : { allowed: false, reason: `DNS ownership check: ${dns.reason}` };
  }

  /** The allow sources (allow patterns, ask); any may approve. */
  private async decideBySources(name: string): Promise<PolicyDecision> {
    // The registry first: it is the only source that can say "no" to a name another source allows.
    if (this.deps.registry) {
      const known = await this.deps.registry.decide(name).catch((err: unknown) => {
        // Fail closed: a registry we cannot read might hold a "disabled" for this name.
        this.deps.logger.warn({ domain: name, step: 'policy-registry', err }, 'domain registry unavailable; denying');
        return { known: true, allowed: false, reason: 'domain registry unavailable' } as const;
      });
      if (known.known) return known.allowed ? { allowed: true, source: 'registry' } : { allowed: false, reason: known.reason };
    }
    if (this.allow.matches(name)) return { allowed: true, source: 'allow' };
    if (!this.config.ask) {
      if (this.deps.registry) return { allowed: false, reason: this.allow.size ? 'not bound in the domain registry nor in onDemand.allow' : 'not bound in the domain registry' };
      return { allowed: false, reason: this.allow.size ? 'not in onDemand.allow' : 'no on-demand policy configured' };
    }
    const cached = this.decisions.get(name);
    if (cached) return cached;
    let inflight = this.pending.get(name);
    if (!inflight) {
      inflight = this.ask(name).finally(() => this.pending.delete(name));
      this.pending.set(name, inflight);
    }
    return inflight;
  }

  /** Forget cached decisions (all, or one name), e.g. after the platform changed a binding. */
  forget(name?: string): void {
    if (name === undefined) this.decisions.clear();
    else this.decisions.delete(name);
    this.deps.dns?.forget(name);
  }

  private async ask(name: string): Promise<PolicyDecision> {
    const url = new URL(this.config.ask!);
    url.searchParams.set('domain', name);
    const started = performance.now();
    let decision: PolicyDecision;
    try {
      // undici's request() never follows redirects: a 3xx is an answer, and it is not 2xx.
      const res = await undici().request(url, {
        method: 'GET',
        signal: AbortSignal.timeout(this.config.askTimeout),
        headers: { 'user-agent': 'certgate-ask/0.1' },
      });
      await res.body.dump();
      decision =
        res.statusCode >= 200 && res.statusCode < 300
          ? { allowed: true, source: 'ask' }
          : { allowed: false, reason: `ask endpoint answered ${res.statusCode}` };
    } catch (err) {
      const e = err as Error & { code?: string };
      const reason = e.name === 'TimeoutError' || e.name === 'AbortError' ? `ask endpoint timed out after ${this.config.askTimeout} ms` : `ask endpoint failed: ${e.code ?? e.message}`;
      decision = { allowed: false, reason };
    }
    const ms = Math.round(performance.now() - started);
    const suppressed = decision.allowed ? 0 : this.askDeniedLog.sample();
    if (suppressed !== undefined) {
      const fields = decision.allowed ? {} : { reason: decision.reason, suppressedSinceLastLine: suppressed };
      this.deps.logger.info({ domain: name, step: 'policy-ask', allowed: decision.allowed, ...fields, ms }, 'on-demand policy asked');
    }
    this.decisions.set(name, decision, decision.allowed ? this.config.askCacheTtl : this.config.askDenyCacheTtl);
    return decision;
  }
}
