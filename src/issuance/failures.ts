// A name's failures, as the backoff gate reads them: shared storage (RetryState: any instance's
// failures, kept across restarts) with a memory in front of it, so a name in backoff costs no
// storage read per handshake until its retryAt. A failure storage could not take (it was down)
// is kept in memory only, marked MEMORY_ONLY_RECORD, and still backs the name off here.
import type { Logger } from '../util/log.ts';
import type { LimitsConfig } from '../config/schema.ts';
import { StorageError } from '../storage/storage.ts';
import { LruCache } from '../util/lru.ts';
import { backoffDelay, type NameRetryState, type RetrySchedule, type RetryState } from './backoff.ts';
import { IssuanceSkipped, IssuersFailed } from './errors.ts';
import type { RetryStorage } from './store.ts';

/** The `issuers` mark of a failure record kept in this process only (storage could not take it). */
const MEMORY_ONLY_RECORD = '(in memory only: storage could not take it)';

/** What NameFailures needs: the shared record, the config it applies (as parsed), and how storage calls are retried. */
export interface NameFailuresOptions {
  /** The shared failure records (retry/names/<domain>). */
  state: RetryState;
  /** acme.retry: the waits after each failure. */
  retry: RetrySchedule;
  /** onDemand.limits.unknownNameCache: bound on the names remembered. */
  limits: Pick<LimitsConfig, 'unknownNameCache'>;
  retryStorage: RetryStorage;
  logger: Logger;
}

/** The failure record of each name (see the header); one per manager. */
export class NameFailures {
  /** Names in backoff, as last read from (or written to) shared storage, until their retryAt. */
  private readonly remembered: LruCache<string, NameRetryState>;

  constructor(private readonly opts: NameFailuresOptions) {
    this.remembered = new LruCache(opts.limits.unknownNameCache);
  }

  /**
   * Why `domain` may not be ordered now (in backoff, or given up), or null. Reads storage at most
   * once per remembered record; storage errors are retried, then reject.
   */
  async backoff(domain: string): Promise<string | null> {
    return backoffReason(await this.state(domain));
  }

  /** The name's failure record: memory first, then shared storage (remembered until its retryAt). */
  async state(domain: string): Promise<NameRetryState | null> {
    const remembered = this.remembered.get(domain);
    if (remembered) return remembered;
    const stored = await this.opts.retryStorage(domain, 'retry-state', () => this.opts.state.get(domain));
    if (stored) this.remember(domain, stored);
    return stored;
  }

  /**
   * The record as shared storage holds it now, for reporting; a memory-only record is reported
   * when storage has none or cannot be read.
   */
  async report(domain: string): Promise<NameRetryState | null> {
    const inMemoryOnly = (): NameRetryState | undefined => {
      const remembered = this.remembered.peek(domain);
      return remembered?.issuers === MEMORY_ONLY_RECORD ? remembered : undefined;
    };
    try {
      return (await this.opts.state.get(domain)) ?? inMemoryOnly() ?? null;
    } catch (err) {
      const remembered = inMemoryOnly();
      if (remembered) return remembered;
      throw err;
    }
  }

  /** Keeps `state` in memory until its retryAt (an hour at most; a minute once given up). */
  remember(domain: string, state: NameRetryState): void {
    const ttl = state.retryAt === null ? 60_000 : state.retryAt - Date.now();
    if (ttl > 0) this.remembered.set(domain, state, Math.min(ttl, 60_000 * 60));
  }

  /** Forgets this process's memory of the name (storage keeps its record). */
  forget(domain: string): void {
    this.remembered.delete(domain);
  }

  /** Forgets the name's failures everywhere (a success, an admin renewal, a delete). Rejects on storage errors. */
  async clear(domain: string): Promise<void> {
    this.remembered.delete(domain);
    await this.opts.state.clear(domain);
  }

  /**
   * Records a failed attempt for backoff, unless the name is not at fault: a skipped attempt (no
   * CA asked) or a storage outage (the next handshake tries again). Never rejects: a record
   * storage cannot take is kept in memory only.
   */
  async record(domain: string, err: unknown, step: string): Promise<void> {
    if (err instanceof IssuanceSkipped || err instanceof StorageError) return;
    const reason = (err as Error).message;
    try {
      const state = await this.opts.state.recordFailure(domain, {
        reason,
        step,
        ...(err instanceof IssuersFailed ? { failedCas: err.failedCas, recoveredCas: err.recoveredCas } : {}),
        ...(err instanceof IssuersFailed && err.retryAfterMs !== undefined ? { retryAfterMs: err.retryAfterMs } : {}),
      });
      this.remember(domain, state);
    } catch (recordErr) {
      this.opts.logger.warn({ domain, step: 'retry-state', err: recordErr }, 'could not record the failure in storage; backoff kept in memory only');
      this.remember(domain, this.inMemory(domain, reason, step));
    }
  }

  /** The next record after the one remembered, kept in this process only. */
  private inMemory(domain: string, reason: string, step: string): NameRetryState {
    const previous = this.remembered.peek(domain);
    const failures = (previous?.failures ?? 0) + 1;
    const now = Date.now();
    return {
      failures,
      firstFailureAt: previous?.firstFailureAt ?? now,
      lastFailureAt: now,
      retryAt: now + backoffDelay(this.opts.retry, failures),
      reason,
      step,
      stagingFirst: previous?.stagingFirst ?? [],
      issuers: MEMORY_ONLY_RECORD,
    };
  }
}

/** Why a name with `state` may not be ordered now, or null (no record, or its retryAt passed). */
export function backoffReason(state: NameRetryState | null): string | null {
  if (!state) return null;
  if (state.retryAt === null) {
    return `given up after ${state.failures} failure(s) since ${new Date(state.firstFailureAt).toISOString()} (renew it as admin or change acme.issuers to try again): ${state.reason}`;
  }
  if (state.retryAt > Date.now()) {
    return `in backoff after ${state.failures} failure(s) until ${new Date(state.retryAt).toISOString()}: ${state.reason}`;
  }
  return null;
}
