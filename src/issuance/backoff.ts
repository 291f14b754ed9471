// When a name may be ordered again after failures, shared through storage so every instance of
// a cluster agrees: 1 min, 10 min, 100 min, then daily (Let's Encrypt's integration guide), and
// no more orders once the name has failed for 30 days. A CA that answers 429/503 with
// Retry-After pauses every new order to that CA (not just the name) until then.
//
// Storage:  retry/names/<domain>   NameRetryState (JSON)
//           retry/cas/<ca>         CaPause (JSON)
import type { RetryConfig } from '../config/schema.ts';
import type { Logger } from '../util/log.ts';
import { keys } from '../storage/keys.ts';
import { getJson, type Storage } from '../storage/storage.ts';

/** How long a name waits after failures: `acme.retry` as parsed (ms). */
export type RetrySchedule = RetryConfig;

/** The default: 1 min, 10 min, 100 min, then daily; give up after 30 days (the schema's default too). */
export const LETS_ENCRYPT_SCHEDULE: RetrySchedule = {
  delays: [60_000, 600_000, 6_000_000],
  then: 86_400_000,
  giveUpAfter: 30 * 86_400_000,
};

/** The wait after the n-th consecutive failure (n ≥ 1). */
export function backoffDelay(schedule: RetrySchedule, failures: number): number {
  return schedule.delays[Math.max(0, failures - 1)] ?? schedule.then;
}

/** A name's failure record, shared through storage (retry/names/<domain>). */
export interface NameRetryState {
  failures: number;
  firstFailureAt: number;
  lastFailureAt: number;
  /** No order before this time (ms since epoch); null once given up. */
  retryAt: number | null;
  reason: string;
  /** The step of the last failure (e.g. "authorization"); absent in records written before it was kept. */
  step?: string;
  /** Production CAs (ids) that failed for this name: validate against their staging first. */
  stagingFirst: string[];
  /** The issuer list this state was recorded under; another list (a config change) resets it. */
  issuers: string;
}

/** A CA-wide pause after a 429/503 with Retry-After (retry/cas/<ca>): no new orders to it before `until`. */
export interface CaPause {
  until: number;
  reason: string;
}

/** What RetryState.recordFailure needs to know of a failed attempt. */
export interface FailureInput {
  reason: string;
  /** The step that failed (e.g. "authorization", "directory"), as the issuance-failed event says. */
  step: string;
  /** The CA's Retry-After for this name, if it sent one. */
  retryAfterMs?: number;
  /** Production CAs that failed for the name in this attempt. */
  failedCas?: string[];
  /** Production CAs whose staging has now succeeded: back to production. */
  recoveredCas?: string[];
}


/**
 * The retry records in storage, read and written by every instance. Records made under another
 * issuer list (a config change) are ignored, so a changed configuration starts afresh.
 */
export class RetryState {
  constructor(
    private readonly storage: Storage,
    private readonly schedule: RetrySchedule,
    /** Identifies the configured issuers (their directories, in order). */
    private readonly issuers: string,
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  /** The name's state, or null when it has no failures on record (or they predate a config change). */
  async get(domain: string): Promise<NameRetryState | null> {
    const state = await getJson<NameRetryState>(this.storage, keys.retryName(domain));
    return state?.issuers === this.issuers ? state : null;
  }

  /** Records one failed attempt; returns the new state (retryAt null = given up). */
  async recordFailure(domain: string, failure: FailureInput): Promise<NameRetryState> {
    const now = this.now();
    const previous = await this.get(domain);
    const failures = (previous?.failures ?? 0) + 1;
    const firstFailureAt = previous?.firstFailureAt ?? now;
    const gaveUp = now - firstFailureAt >= this.schedule.giveUpAfter;
    const wait = Math.max(backoffDelay(this.schedule, failures), failure.retryAfterMs ?? 0);
    const stagingFirst = new Set([...(previous?.stagingFirst ?? []), ...(failure.failedCas ?? [])]);
    for (const ca of failure.recoveredCas ?? []) stagingFirst.delete(ca);
    const state: NameRetryState = {
      failures,
      firstFailureAt,
      lastFailureAt: now,
      retryAt: gaveUp ? null : now + wait,
      reason: failure.reason,
      step: failure.step,
      stagingFirst: [...stagingFirst],
      issuers: this.issuers,
    };
    await this.storage.put(keys.retryName(domain), JSON.stringify(state));
    if (gaveUp) {
      this.logger.error(
        { domain, step: 'retry-give-up', failures, since: new Date(firstFailureAt).toISOString(), failedStep: failure.step, reason: failure.reason },
        'giving up on the name: no more orders until an operator renews it or the issuer configuration changes',
      );
    } else {
      this.logger.warn({ domain, step: 'retry-backoff', failures, retryInMs: wait, retryAt: new Date(now + wait).toISOString(), failedStep: failure.step, reason: failure.reason }, 'issuance failed; name in backoff');
    }
    return state;
  }

  /** Keeps the failure count but records which CAs went back to production. */
  async update(domain: string, state: NameRetryState): Promise<void> {
    await this.storage.put(keys.retryName(domain), JSON.stringify(state));
  }

  async clear(domain: string): Promise<void> {
    await this.storage.delete(keys.retryName(domain));
  }

  /** Pauses new orders to `ca` until `until` (a 429/503 with Retry-After). Never shortens a pause. */
  async pauseCa(ca: string, until: number, reason: string): Promise<void> {
    const current = await this.caPause(ca);
    if (current && current.until >= until) return;
    await this.storage.put(keys.retryCa(ca), JSON.stringify({ until, reason } satisfies CaPause));
    this.logger.warn({ step: 'ca-pause', ca, until: new Date(until).toISOString(), reason }, 'CA asked us to slow down: no new orders to it until then');
  }

  /** The CA's pause if one is in force now. */
  async caPause(ca: string): Promise<CaPause | null> {
    const pause = await getJson<CaPause>(this.storage, keys.retryCa(ca));
    return pause && pause.until > this.now() ? pause : null;
  }
}
