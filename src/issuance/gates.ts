// The gates an on-demand attempt passes before an order, cheapest and most telling first:
//   1. a denial remembered in memory (onDemand.askDenyCacheTtl): asked before storage, so a flood of names
//      policy refused costs no storage reads;
//   2. the abuse limits (onDemand.limits), only for handshakes that would start an issuance;
//   3. policy: may this name have a certificate? A denial is remembered (step 1);
//   4. the name's backoff after failures (shared through storage);
//   5. the pre-flight self-check (does the name reach us?), when configured.
// The manager asks storage between 1 and 2: a stored certificate is served without the rest.
import type { Logger } from '../util/log.ts';
import type { LimitsConfig, OnDemandConfig } from '../config/schema.ts';
import type { OnDemandPolicy } from '../policy/policy.ts';
import { LogSampler } from '../util/log-sampler.ts';
import { LruCache } from '../util/lru.ts';
import type { NameFailures } from './failures.ts';
import type { IssuanceLimits } from './limits.ts';
import type { Preflight } from './preflight.ts';

/** Why a name gets no certificate now: refused (policy, limits) or not possible now (backoff, CA trouble). */
export type Refusal = { kind: 'denied'; reason: string; rateLimited?: true } | { kind: 'failed'; reason: string };

/** A name every gate let through, and which policy source approved it. */
export interface Approval {
  kind: 'approved';
  approvedBy: string;
}

/** What the gates need; `limits` and `preflight` are optional (absent: the gate is open). */
export interface GatesOptions {
  policy: OnDemandPolicy;
  failures: NameFailures;
  limits?: IssuanceLimits | undefined;
  preflight?: Preflight | undefined;
  /**
   * As parsed: askDenyCacheTtl, how long a denial is remembered; limits.unknownNameCache, bound
   * on the names whose denial is remembered.
   */
  onDemand: Pick<OnDemandConfig, 'askDenyCacheTtl'> & { limits: Pick<LimitsConfig, 'unknownNameCache'> };
  logger: Logger;
}

/** Who asks for a certificate: given by the handshake path, absent for admin and renewal calls. */
export interface ObtainRequest {
  clientIp?: string | undefined;
}

/** The gates of the header, with their memory of denials. */
export class AttemptGates {
  private readonly denied: LruCache<string, string>;
  // Anyone can make names be denied (random SNI): the policy's own line records each ask; this one is sampled.
  private readonly deniedLog = new LogSampler({ maxPerInterval: 10, intervalMs: 10_000 });

  constructor(private readonly opts: GatesOptions) {
    this.denied = new LruCache(opts.onDemand.limits.unknownNameCache);
  }

  /** Gate 1: the denial remembered for `domain`, if any. No I/O. */
  remembered(domain: string): Refusal | null {
    const reason = this.denied.get(domain);
    return reason === undefined ? null : { kind: 'denied', reason };
  }

  /**
   * Gates 2-5 for a name that is not stored. Limits apply only with a `request` (handshakes).
   * Rejects only when storage (backoff) or the policy source fails after its own retries.
   */
  async pass(domain: string, request: ObtainRequest | undefined): Promise<Approval | Refusal> {
    const { logger } = this.opts;
    // Not remembered as denied: this would be the first issuance (and not cached, so a
    // legitimate name is not held back by someone else's flood).
    const limited = request && this.opts.limits?.admit(domain, request.clientIp);
    if (limited && !limited.ok) return { kind: 'denied', reason: limited.reason, rateLimited: true };

    const decision = await this.opts.policy.decide(domain);
    if (!decision.allowed) {
      const suppressed = this.deniedLog.sample();
      if (suppressed !== undefined) logger.info({ domain, step: 'policy', allowed: false, reason: decision.reason, suppressedSinceLastLine: suppressed }, 'on-demand certificate denied');
      this.denied.set(domain, decision.reason, this.opts.onDemand.askDenyCacheTtl);
      return { kind: 'denied', reason: decision.reason };
    }

    const backoff = await this.opts.failures.backoff(domain);
    if (backoff) {
      logger.debug({ domain, step: 'backoff', reason: backoff }, 'name in backoff: fallback certificate, no order');
      return { kind: 'failed', reason: backoff };
    }

    if (this.opts.preflight) {
      const check = await this.opts.preflight.check(domain);
      if (!check.ok) return { kind: 'failed', reason: check.reason };
    }
    return { kind: 'approved', approvedBy: decision.source };
  }

  /** Forgets the remembered denial of `domain`: the next attempt asks policy again. */
  forget(domain: string): void {
    this.denied.delete(domain);
  }
}
