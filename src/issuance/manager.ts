// Finds or obtains the certificate for a name that is not in the memory cache:
// storage → policy → retry backoff → pre-flight → one issuance per name (in this process: a
// shared promise; across processes and instances: a storage lock, taken only once the name has
// a slot in the bounded ACME work queue, on-demand ahead of renewals, so no waiter holds a lock),
// trying each configured issuer in order within the rate-limit budgets. Every change is
// announced on the cluster bus so other processes' caches drop the old one.
import { randomUUID } from 'node:crypto';
import { caPauseOf, isFailedAuthorization, issuersKey, retryAfterOf, type CertificateIssuer, type IssuerChoice } from '../acme/issuers.ts';
import type { IssuedCertificate, IssueOptions } from '../acme/issuer.ts';
import { backoffDelay, LETS_ENCRYPT_SCHEDULE, RetryState, type NameRetryState, type RetrySchedule } from './backoff.ts';
import { CertificateEvents } from '../events.ts';
import type { Logger } from '../log.ts';
import type { IssuanceLimits } from './limits.ts';
import type { RateBudgets } from './budgets.ts';
import type { OnDemandPolicy } from '../policy/policy.ts';
import type { Preflight } from './preflight.ts';
import type { ClusterBus } from '../storage/bus.ts';
import { deleteCertificate, findCertificate, loadCertificate, saveCertificate, type CertificateBundle, type StoredCertificate } from './store.ts';
import { keys } from '../storage/layout.ts';
import { keepLockAlive, retryStorageErrors, StorageError, storageErrorIn, type Lock, type Storage } from '../storage/storage.ts';
import { forEachConcurrently } from '../util/concurrency.ts';
import { LruCache } from '../util/lru.ts';
import { IssuancePriority, PriorityWorkQueue } from './queue.ts';
import type { CachedCertificate, CertificateCache } from '../tls/cache.ts';

export const CERTIFICATE_EVENTS = 'certificates';

/**
 * Default issuance lock expiry (acme.lockTtl): a dead holder's name is taken over within about
 * this long (CertMagic calls a lock stale after 10 s without a refresh), while a live holder,
 * refreshing every 2 s, rides out an event-loop stall of ~8 s.
 */
export const DEFAULT_ISSUE_LOCK_TTL_MS = 10_000;

/**
 * Default bound on on-demand issuances waiting for a CA slot (onDemand.limits.maxQueuedIssuances).
 * A waiter costs a few hundred bytes and holds no lock, and one that outlives its handshake's wait
 * is still issued in the background, so its customer's next visit succeeds: the bound is set for
 * a platform's burst of new names (a migration, a marketing launch), not for one handshake's wait.
 * A flood from one address cannot fill it alone: onDemand.limits.perClient (burst 100) stops it first.
 */
export const DEFAULT_MAX_QUEUED_ISSUANCES = 256;

export interface CertificateManagerOptions {
  storage: Storage;
  /** The first (preferred) issuer; with `issuers` unset, the only one. */
  issuer: CertificateIssuer;
  /** Every issuer in order of preference (acme.issuers); default: [{ production: issuer }]. */
  issuers?: IssuerChoice[];
  policy: OnDemandPolicy;
  cache: CertificateCache;
  logger: Logger;
  maxConcurrentIssuances: number;
  /** How long a name that is neither stored nor approved is answered from memory. */
  deniedTtlMs?: number;
  /** Waits after failed issuances for a name (shared through storage). Default: Let's Encrypt's. */
  retry?: RetrySchedule;
  /** Rate-limit budgets shared through storage; none = unlimited. */
  budgets?: RateBudgets;
  /** Pre-flight self-check before on-demand orders; none = off. */
  preflight?: Preflight;
  /**
   * Expiry of the per-name issuance lock (acme.lockTtl, default DEFAULT_ISSUE_LOCK_TTL_MS): how
   * soon another instance takes over a name whose issuing process died. The holder refreshes it
   * five times per expiry while it works (keepLockAlive), so a slow CA never makes it lose it.
   */
  issueLockTtlMs?: number;
  /**
   * On-demand issuances that may wait for a CA slot in this process
   * (onDemand.limits.maxQueuedIssuances, default DEFAULT_MAX_QUEUED_ISSUANCES); a name beyond
   * gets the fallback at once, with no order. Renewals and admin work are not bounded.
   */
  maxQueuedIssuances?: number;
  /** How long to wait for another process's issuance lock. */
  issueLockWaitMs?: number;
  /** How long storage errors (e.g. Redis down) are retried, with backoff, before giving up. */
  storageRetryMs?: number;
  /** Lifecycle events (issuance started/succeeded/failed, renewed, deleted). */
  events?: CertificateEvents;
  /** Rate limits on obtain() calls from handshakes that would start an issuance (onDemand.limits). */
  limits?: IssuanceLimits;
  /** Bound on the per-name denied and failure-backoff memories; default 100k names. */
  maxNameEntries?: number;
  /** Called with each certificate loaded from storage (the maintainer renews one that is due). */
  onStorageLoad?: (bundle: CertificateBundle) => void;
}

/** Who asks for a certificate: given by the handshake path, absent for admin and renewal calls. */
export interface ObtainRequest {
  clientIp?: string | undefined;
}

/** The certificate an ARI renewal replaces (RFC 9773): its certificate ID and the CA that issued it. */
export interface ReplacedCertificate {
  /** The ARI certificate ID, sent as the new order's `replaces`. */
  certId: string;
  /** Id of the CA that issued it (meta.json `ca`): only an order to this CA may name it. */
  ca: string;
}

export interface RenewOptions {
  /** Why: 'renewal' (scheduler) or 'admin' (API call). */
  reason?: 'renewal' | 'admin';
  /** ACME profile for the new order. */
  profile?: string;
  /**
   * ARI: the certificate this renewal replaces. Sent as `replaces` (and exempt from the budgets)
   * only in an order to the CA that issued it; orders to other issuers are plain new orders.
   */
  replaces?: ReplacedCertificate;
}

/**
 * How orders are made: a renewal's profile and the certificate an ARI renewal replaces; for an
 * on-demand order, the client address whose share of the budgets it spends.
 */
type OrderOptions = Omit<RenewOptions, 'reason'> & { clientIp?: string | undefined };

export type ObtainOutcome =
  | { kind: 'ready'; certificate: CachedCertificate; source: 'storage' | 'issued' }
  | { kind: 'denied'; reason: string; rateLimited?: true }
  | { kind: 'failed'; reason: string };

/** No issuer could even be asked (budgets spent, CAs paused, name in backoff): no new failure to record. */
class IssuanceSkipped extends Error {
  constructor(
    message: string,
    readonly step = 'issuer-skipped',
  ) {
    super(message);
  }
}

/** Every issuer was tried and failed for the name. */
class IssuersFailed extends Error {
  constructor(
    message: string,
    readonly step: string,
    readonly failedCas: string[],
    readonly recoveredCas: string[],
    readonly retryAfterMs: number | undefined,
  ) {
    super(message);
  }
}

/** A certificate from one issuer, and the certificate its order named in `replaces`, if any. */
type IssuedFrom = IssuedCertificate & { from: CertificateIssuer; replaced?: ReplacedCertificate };

interface CertificateEvent {
  domain: string;
  event: 'updated' | 'deleted';
  fingerprint256?: string;
  origin: string;
}

/** The `issuers` mark of a failure record kept in this process only (storage could not take it). */
const MEMORY_ONLY_RECORD = '(in memory only: storage could not take it)';

export class CertificateManager {
  private readonly inflight = new Map<string, Promise<ObtainOutcome>>();
  private readonly denied: LruCache<string, string>;
  /** Names in backoff, as last read from (or written to) shared storage, until their retryAt. */
  private readonly failures: LruCache<string, NameRetryState>;
  private readonly issuances: PriorityWorkQueue;
  private readonly issuers: IssuerChoice[];
  /** Every CA certificates may be stored under, in order of preference. */
  private readonly cas: string[];
  private readonly retry: RetryState;
  private readonly schedule: RetrySchedule;
  private readonly origin = randomUUID();
  /** The sampled "queue full" warning: when it was last logged, and names skipped since. */
  private queueFullLoggedAt = -Infinity;
  private queueFullSinceLastLine = 0;
  private bus: ClusterBus | undefined;
  private unsubscribe: (() => Promise<void>) | undefined;
  private stopReconnectListener: (() => void) | undefined;
  readonly events: CertificateEvents;

  constructor(private readonly opts: CertificateManagerOptions) {
    this.issuances = new PriorityWorkQueue(opts.maxConcurrentIssuances);
    this.denied = new LruCache(opts.maxNameEntries ?? 100_000);
    this.failures = new LruCache(opts.maxNameEntries ?? 100_000);
    this.events = opts.events ?? new CertificateEvents(opts.logger);
    this.issuers = opts.issuers ?? [{ production: opts.issuer }];
    this.cas = [...new Set(this.issuers.map((i) => i.production.ca))];
    this.schedule = opts.retry ?? LETS_ENCRYPT_SCHEDULE;
    this.retry = new RetryState(opts.storage, this.schedule, issuersKey(this.issuers), opts.logger);
  }

  /** Issuances running or queued for a CA slot, in this process. */
  get pending(): number {
    return this.inflight.size;
  }

  /** The ACME work queue in this process: orders running, and waiting for a slot. */
  get issuanceQueue(): { running: number; waiting: number } {
    return { running: this.issuances.inUse, waiting: this.issuances.waiting() };
  }

  /** Listen for certificate changes made by other processes and announce ours. */
  async attachBus(bus: ClusterBus): Promise<void> {
    this.bus = bus;
    this.unsubscribe = await bus.subscribe(CERTIFICATE_EVENTS, (raw) => this.onRemoteChange(raw));
    // Messages published while we were cut off are lost: re-check what we serve.
    this.stopReconnectListener = bus.onReconnect?.(() => void this.revalidateCache());
  }

  async close(): Promise<void> {
    this.stopReconnectListener?.();
    await this.unsubscribe?.();
  }

  /**
   * Compares every cached certificate with storage and replaces (or drops) those changed
   * elsewhere, a few at a time, in the background. Handshakes keep being served meanwhile.
   */
  async revalidateCache(): Promise<{ checked: number; replaced: number }> {
    const { cache, storage, logger } = this.opts;
    const domains = cache.domains();
    let replaced = 0;
    await forEachConcurrently(domains, 8, async (domain) => {
      try {
        const stored = await loadCertificate(storage, this.cas, domain);
        const cached = cache.peek(domain);
        if (!cached || stored?.fingerprint256 === cached.fingerprint256) return;
        replaced++;
        if (stored && usable(stored)) cache.add(stored);
        else cache.delete(domain);
      } catch (err) {
        logger.warn({ domain, step: 'cache-revalidate', err }, 'could not re-check cached certificate');
      }
    });
    logger.info({ step: 'cache-revalidate', checked: domains.length, replaced }, 'cached certificates re-checked after reconnect');
    return { checked: domains.length, replaced };
  }

  /**
   * Resolves to a ready certificate, or why there is none. Never rejects. Concurrent calls for
   * one name share one attempt; the attempt goes on even if every caller stops waiting.
   */
  obtain(domain: string, request?: ObtainRequest): Promise<ObtainOutcome> {
    return this.once(domain, () => this.attempt(domain, request));
  }

  /**
   * Replaces the certificate now, whatever storage holds (renewal, admin action). Renewals wait
   * behind on-demand work in the ACME queue and respect the name's backoff; an admin renewal
   * does not (it is the operator's way to retry a name that was given up).
   */
  renew(domain: string, opts: RenewOptions = {}): Promise<ObtainOutcome> {
    return this.once(domain, async () => {
      const reason = opts.reason ?? 'renewal';
      try {
        if (reason === 'admin') {
          this.failures.delete(domain);
          await this.retryStorage(domain, 'retry-state', () => this.retry.clear(domain));
        } else {
          const backoff = await this.backoff(domain);
          if (backoff) return { kind: 'failed', reason: backoff };
        }
        const current = this.opts.cache.peek(domain) ?? (await this.fromStorage(domain));
        const { reason: _reason, ...orderOptions } = opts;
        return await this.issueUnderLock(domain, reason, { replacing: current?.fingerprint256 ?? 'none', orderOptions });
      } catch (err) {
        return await this.failed(domain, err, true);
      }
    });
  }

  /**
   * Why `domain` may not be ordered now (in backoff, or given up), or null. Shared through
   * storage: a failure on any instance counts. For the renewal scheduler, too.
   */
  async backoff(domain: string): Promise<string | null> {
    const state = await this.retryState(domain);
    if (!state) return null;
    if (state.retryAt === null) {
      return `given up after ${state.failures} failure(s) since ${new Date(state.firstFailureAt).toISOString()} (renew it as admin or change acme.issuers to try again): ${state.reason}`;
    }
    if (state.retryAt > Date.now()) {
      return `in backoff after ${state.failures} failure(s) until ${new Date(state.retryAt).toISOString()}: ${state.reason}`;
    }
    return null;
  }

  /**
   * When `domain` may be ordered again after its failures (shared through storage): a time, null
   * once given up, undefined when it has no failures on record. The renewal scheduler files a
   * failed renewal at this time, so both follow one backoff.
   */
  async retryAt(domain: string): Promise<number | null | undefined> {
    return (await this.retryState(domain))?.retryAt;
  }

  /**
   * The name's failures since its last success as shared storage holds them (any instance's, and
   * kept across restarts), or null when there are none. For reporting (the admin API); backoff
   * decisions go through retryState, which remembers the record in this process. A failure that
   * could not be written to storage (it was down) lives only in this process's memory: reported
   * from there when storage has none or cannot be read.
   */
  async failureRecord(domain: string): Promise<NameRetryState | null> {
    const inMemoryOnly = (): NameRetryState | undefined => {
      const remembered = this.failures.peek(domain);
      return remembered?.issuers === MEMORY_ONLY_RECORD ? remembered : undefined;
    };
    try {
      return (await this.retry.get(domain)) ?? inMemoryOnly() ?? null;
    } catch (err) {
      const remembered = inMemoryOnly();
      if (remembered) return remembered;
      throw err;
    }
  }

  /** The name's failure record: memory first, then shared storage (remembered until its retryAt). */
  private async retryState(domain: string): Promise<NameRetryState | null> {
    const remembered = this.failures.get(domain);
    if (remembered) return remembered;
    const stored = await this.retryStorage(domain, 'retry-state', () => this.retry.get(domain));
    if (stored) this.rememberFailure(domain, stored);
    return stored;
  }

  /**
   * The certificate stored for `domain`, under whichever configured issuer's CA holds it (the one
   * handshakes are served from), with its metadata; null when there is none. For the admin API.
   */
  async storedCertificate(domain: string): Promise<StoredCertificate | null> {
    return findCertificate(this.opts.storage, this.cas, domain);
  }

  /** Revokes a stored certificate at the CA that issued it, with that issuer's account. */
  async revoke(stored: StoredCertificate, reason?: number): Promise<void> {
    const issuer = this.issuers.find((i) => i.production.ca === stored.ca)?.production;
    if (!issuer) throw new Error(`cannot revoke the certificate for ${stored.domain}: CA ${stored.ca} is not one of acme.issuers (step: revoke)`);
    if (!issuer.revokeCertificate) throw new Error(`cannot revoke the certificate for ${stored.domain}: issuer ${stored.ca} does not support revocation (step: revoke)`);
    await issuer.revokeCertificate(stored.domain, stored.certPem, reason);
  }

  /**
   * Stops serving and forgets the certificate for `domain` everywhere: storage, this cache,
   * and (through the bus) every other process's cache.
   */
  async delete(domain: string, reason: string): Promise<void> {
    const { storage, cache } = this.opts;
    for (const ca of this.cas) await this.retryStorage(domain, 'delete', () => deleteCertificate(storage, ca, domain));
    await this.retryStorage(domain, 'delete', () => this.retry.clear(domain));
    cache.delete(domain);
    this.denied.delete(domain);
    this.failures.delete(domain);
    this.announce({ domain, event: 'deleted' });
    this.events.emit({ type: 'deleted', domain, reason });
    this.opts.logger.info({ domain, step: 'delete', reason }, 'certificate deleted');
  }

  /**
   * Forget this process's remembered "denied" and failure backoff for a name, so the next
   * handshake asks policy again (the domain registry calls this when a binding changes).
   */
  forgetDecision(domain: string): void {
    this.denied.delete(domain);
    this.failures.delete(domain);
  }

  private once(domain: string, work: () => Promise<ObtainOutcome>): Promise<ObtainOutcome> {
    let attempt = this.inflight.get(domain);
    if (!attempt) {
      attempt = work().finally(() => this.inflight.delete(domain));
      this.inflight.set(domain, attempt);
    }
    return attempt;
  }

  private async attempt(domain: string, request?: ObtainRequest): Promise<ObtainOutcome> {
    const { logger } = this.opts;
    const deniedReason = this.denied.get(domain);
    if (deniedReason !== undefined) return { kind: 'denied', reason: deniedReason };
    try {
      const stored = await this.fromStorage(domain);
      if (stored) return { kind: 'ready', certificate: stored, source: 'storage' };

      // Not remembered as denied: this would be the first issuance (and not cached, so a
      // legitimate name is not held back by someone else's flood).
      const limited = request && this.opts.limits?.admit(domain, request.clientIp);
      if (limited && !limited.ok) return { kind: 'denied', reason: limited.reason, rateLimited: true };

      const decision = await this.opts.policy.decide(domain);
      if (!decision.allowed) {
        logger.info({ domain, step: 'policy', allowed: false, reason: decision.reason }, 'on-demand certificate denied');
        this.denied.set(domain, decision.reason, this.opts.deniedTtlMs ?? 60_000);
        return { kind: 'denied', reason: decision.reason };
      }

      const backoff = await this.backoff(domain);
      if (backoff) {
        logger.debug({ domain, step: 'backoff', reason: backoff }, 'name in backoff: fallback certificate, no order');
        return { kind: 'failed', reason: backoff };
      }

      if (this.opts.preflight) {
        const check = await this.opts.preflight.check(domain);
        if (!check.ok) return { kind: 'failed', reason: check.reason };
      }

      return await this.issueUnderLock(domain, decision.source, { orderOptions: { clientIp: request?.clientIp } });
    } catch (err) {
      return await this.failed(domain, err, false);
    }
  }

  /** Logs and announces a failed attempt; records it for backoff unless the name is not at fault. */
  private async failed(domain: string, err: unknown, renewal: boolean): Promise<ObtainOutcome> {
    const { logger } = this.opts;
    const reason = (err as Error).message;
    const step = stepOf(err, renewal ? 'renew' : 'obtain');
    const ca = (err instanceof IssuersFailed ? err.failedCas.at(-1) : undefined) ?? this.cas[0]!;
    if (err instanceof IssuanceSkipped) {
      // Budgets spent, CAs paused, queue full: the log line came from there; the name is not at
      // fault. A full queue is a flood: its own warning is sampled, so per name only at debug.
      logger[step === 'queue-full' ? 'debug' : 'info']({ domain, step, reason }, 'no order placed: fallback certificate');
      return { kind: 'failed', reason };
    }
    // A storage outage is not the name's fault either: the next handshake tries again.
    if (!(err instanceof StorageError)) {
      try {
        const state = await this.retry.recordFailure(domain, {
          reason,
          step,
          ...(err instanceof IssuersFailed ? { failedCas: err.failedCas, recoveredCas: err.recoveredCas } : {}),
          ...(err instanceof IssuersFailed && err.retryAfterMs !== undefined ? { retryAfterMs: err.retryAfterMs } : {}),
        });
        this.rememberFailure(domain, state);
      } catch (recordErr) {
        logger.warn({ domain, step: 'retry-state', err: recordErr }, 'could not record the failure in storage; backoff kept in memory only');
        const previous = this.failures.peek(domain);
        const failures = (previous?.failures ?? 0) + 1;
        const now = Date.now();
        this.rememberFailure(domain, {
          failures,
          firstFailureAt: previous?.firstFailureAt ?? now,
          lastFailureAt: now,
          retryAt: now + backoffDelay(this.schedule, failures),
          reason,
          step,
          stagingFirst: previous?.stagingFirst ?? [],
          issuers: MEMORY_ONLY_RECORD,
        });
      }
    }
    logger.error({ domain, step, ca, err }, renewal ? 'could not renew certificate' : 'could not obtain certificate');
    this.events.emit({ type: 'issuance-failed', domain, ca, step, error: reason, renewal });
    return { kind: 'failed', reason };
  }

  private rememberFailure(domain: string, state: NameRetryState): void {
    const ttl = state.retryAt === null ? 60_000 : state.retryAt - Date.now();
    if (ttl > 0) this.failures.set(domain, state, Math.min(ttl, 60_000 * 60));
  }

  private async fromStorage(domain: string): Promise<CachedCertificate | null> {
    const started = performance.now();
    const bundle = await this.retryStorage(domain, 'storage-load', () => loadCertificate(this.opts.storage, this.cas, domain));
    if (!bundle || !usable(bundle)) return null;
    const entry = this.opts.cache.add(bundle);
    this.opts.onStorageLoad?.(bundle);
    this.opts.logger.debug({ domain, step: 'storage-load', ca: bundle.ca, ms: Math.round(performance.now() - started) }, 'certificate loaded from storage');
    return entry;
  }

  /**
   * Issues under the per-name storage lock, in four steps:
   *   1. a slot in the ACME work queue, holding no lock while it waits (on-demand waiters are
   *      bounded: over onDemand.limits.maxQueuedIssuances the name gets the fallback, no order);
   *   2. the name's lock, taken only with the slot; when another process holds it, the slot is
   *      given back while we wait for that lock, then we go back to step 1 unless step 3 ends it;
   *   3. storage again: without `replacing`, a certificate found there wins (another process just
   *      issued it); with `replacing` (a renewal), only one other than the one being replaced;
   *   4. the order, with the lock refreshed throughout (keepLockAlive) and both released after.
   */
  private async issueUnderLock(
    domain: string,
    approvedBy: string,
    { replacing, orderOptions = {} }: { replacing?: string; orderOptions?: OrderOptions } = {},
  ): Promise<ObtainOutcome> {
    const { storage, logger } = this.opts;
    const ttlMs = this.opts.issueLockTtlMs ?? DEFAULT_ISSUE_LOCK_TTL_MS;
    const reason = replacing === undefined ? 'on-demand' : approvedBy === 'admin' ? 'admin' : 'renewal';
    const priority = reason === 'on-demand' ? IssuancePriority.onDemand : reason === 'admin' ? IssuancePriority.admin : IssuancePriority.renewal;
    const started = performance.now();
    const storedWins = async (): Promise<CachedCertificate | null> => {
      const stored = await this.fromStorage(domain);
      return stored && (replacing === undefined || stored.fingerprint256 !== replacing) ? stored : null;
    };
    for (;;) {
      // 1. A CA slot, no lock held while waiting for it.
      const release = await this.queueSlot(domain, priority);
      // 2. The lock, only with the slot.
      let lock: Lock | null;
      try {
        lock = await this.retryStorage(domain, 'lock', () => storage.tryLock(keys.issueLock(domain), { ttlMs }));
      } catch (err) {
        release();
        throw err;
      }
      if (!lock) {
        // Another process is issuing the name: wait for it without holding one of our slots.
        release();
        const waited = await this.retryStorage(domain, 'lock', () =>
          storage.lock(keys.issueLock(domain), { ttlMs, waitMs: this.opts.issueLockWaitMs ?? 180_000 }),
        );
        try {
          const stored = await storedWins();
          if (stored) return { kind: 'ready', certificate: stored, source: 'storage' };
        } finally {
          await waited.release().catch((err: unknown) => logger.warn({ domain, step: 'lock-release', err }, 'issuance lock release failed'));
        }
        continue; // it died or failed: queue for a slot of our own
      }
      const stopKeepAlive = keepLockAlive(lock, ttlMs, (err) => logger.warn({ domain, step: 'lock-refresh', err }, 'issuance lock refresh failed'));
      try {
        // 3. Another process may have finished while we waited for the slot.
        const stored = await storedWins();
        if (stored) return { kind: 'ready', certificate: stored, source: 'storage' };
        // 4. The order.
        return await this.issueHolding(domain, { approvedBy, reason, replacing, orderOptions, started, release });
      } finally {
        release();
        stopKeepAlive();
        await lock.release().catch((err: unknown) => logger.warn({ domain, step: 'lock-release', err }, 'issuance lock release failed'));
      }
    }
  }

  /**
   * A slot in the ACME work queue for `priority`. On-demand work waits behind at most
   * maxQueuedIssuances others; beyond that the name is skipped (fallback, no order, no backoff:
   * the next handshake asks again) and a warning says so, at most once per 10 s with a count.
   */
  private async queueSlot(domain: string, priority: number): Promise<() => void> {
    if (priority !== IssuancePriority.onDemand) return this.issuances.acquire(priority);
    const bound = this.opts.maxQueuedIssuances ?? DEFAULT_MAX_QUEUED_ISSUANCES;
    const release = await this.issuances.acquireWithin(priority, bound);
    if (release) return release;
    this.queueFullSinceLastLine++;
    const now = Date.now();
    if (now - this.queueFullLoggedAt >= 10_000) {
      this.opts.logger.warn(
        { domain, step: 'queue-full', waiting: this.issuances.waiting(priority), bound, rejectedSinceLastLine: this.queueFullSinceLastLine },
        'issuance queue full (onDemand.limits.maxQueuedIssuances): fallback certificate, no order',
      );
      this.queueFullLoggedAt = now;
      this.queueFullSinceLastLine = 0;
    }
    throw new IssuanceSkipped(`no order for ${domain}: ${bound} on-demand issuances already wait for a CA slot (onDemand.limits.maxQueuedIssuances)`, 'queue-full');
  }

  /**
   * The order itself, with the CA slot and the name's lock held; stores and announces the result.
   * The slot is given back (`release`, idempotent) once the certificate is stored.
   */
  private async issueHolding(
    domain: string,
    {
      approvedBy,
      reason,
      replacing,
      orderOptions,
      started,
      release,
    }: { approvedBy: string; reason: 'on-demand' | 'renewal' | 'admin'; replacing: string | undefined; orderOptions: OrderOptions; started: number; release: () => void },
  ): Promise<ObtainOutcome> {
    const { storage, logger } = this.opts;
    logger.info({ domain, step: 'issue-start', approvedBy, reason, waitedMs: Math.round(performance.now() - started) }, 'issuing certificate');
    const issued = await this.issueFromAny(domain, reason, orderOptions);
    const { from, replaced: _replaced, ...certificate } = issued;
    const bundle = await this.retryStorage(domain, 'store', () => saveCertificate(storage, { domain, ca: from.ca, directory: from.directory, ...certificate }), 300_000);
    release();
    const entry = this.opts.cache.add(bundle);
    this.failures.delete(domain);
    await this.retry.clear(domain).catch((err: unknown) => logger.warn({ domain, step: 'retry-state', err }, 'could not clear the retry state'));
    await this.opts.budgets?.recordIssued(issued.from.ca, domain, { exempt: issued.replaced !== undefined }).catch((err: unknown) => logger.warn({ domain, step: 'budget', err }, 'could not count the certificate in the budgets'));
    // Certificates of other CAs for the name would shadow this one on load.
    for (const ca of this.cas) {
      if (ca !== issued.from.ca) await deleteCertificate(storage, ca, domain).catch((err: unknown) => logger.warn({ domain, step: 'store', ca, err }, 'could not remove the other CA\'s certificate'));
    }
    this.announce({ domain, event: 'updated', fingerprint256: bundle.fingerprint256 });
    const ms = Math.round(performance.now() - started);
    logger.info({ domain, step: 'issued', ca: issued.from.ca, directory: issued.from.directory, challenge: issued.challenge, notAfter: bundle.notAfter.toISOString(), ms }, 'certificate issued and stored');
    this.events.emit({ type: replacing === undefined ? 'issuance-succeeded' : 'renewed', domain, ca: issued.from.ca, notAfter: bundle.notAfter.toISOString(), ms, challenge: issued.challenge });
    return { kind: 'ready', certificate: entry, source: 'issued' };
  }

  /**
   * Tries each issuer in order. An issuer is skipped while its CA asked for a pause (429/503
   * with Retry-After) or a budget for it is spent. After a production failure for this name,
   * validation goes to that issuer's staging directory first and back to production only once
   * staging succeeds, so repeated failures do not burn production limits. An ARI renewal's
   * `replaces` goes only in the order to the CA that issued the replaced certificate.
   */
  private async issueFromAny(domain: string, reason: 'on-demand' | 'renewal' | 'admin', orderOptions: OrderOptions): Promise<IssuedFrom> {
    const { logger, budgets } = this.opts;
    const state = await this.retryStorage(domain, 'retry-state', () => this.retry.get(domain));
    // Another instance may have failed for the name while we waited for the lock.
    if (reason !== 'admin' && state && (state.retryAt === null || state.retryAt > Date.now())) {
      this.rememberFailure(domain, state);
      throw new IssuanceSkipped(`no order for ${domain}: ${(await this.backoff(domain)) ?? 'in backoff'}`);
    }
    const failedCas: string[] = [];
    const recoveredCas: string[] = [];
    const problems: string[] = [];
    let lastStep = 'issue';
    let retryAfterMs: number | undefined;
    for (const { production, staging } of this.issuers) {
      const ca = production.ca;
      const pause = await this.retryStorage(domain, 'ca-pause', () => this.retry.caPause(ca));
      if (pause) {
        problems.push(`${ca}: paused until ${new Date(pause.until).toISOString()} (${pause.reason})`);
        logger.info({ domain, step: 'ca-pause', ca, until: new Date(pause.until).toISOString() }, 'CA paused: not ordering from it');
        continue;
      }
      if (staging && state?.stagingFirst.includes(ca)) {
        try {
          logger.info({ domain, step: 'staging-validate', ca, staging: staging.directory }, 'production failed before: validating against staging first');
          await staging.issue(domain, {});
          recoveredCas.push(ca);
          logger.info({ domain, step: 'staging-validate', ca, staging: staging.directory }, 'staging succeeded: back to production');
        } catch (err) {
          failedCas.push(ca); // still failing: production stays on hold for this name
          problems.push(`${ca} (staging ${staging.directory}): ${(err as Error).message}`);
          lastStep = stepOf(err, 'staging-validate');
          retryAfterMs = maxDefined(retryAfterMs, retryAfterOf(err));
          continue;
        }
      }
      // RFC 9773 §5: `replaces` names a certificate of the CA the order goes to; another CA would
      // refuse the order. So only the issuing CA's order carries it, and only that one is exempt.
      const replaced = orderOptions.replaces?.ca === ca ? orderOptions.replaces : undefined;
      if (orderOptions.replaces && !replaced) {
        logger.debug({ domain, step: 'new-order', ca, replacedCa: orderOptions.replaces.ca }, 'certificate issued by another CA: plain new order, no `replaces`');
      }
      const issueOptions: IssueOptions = {
        ...(orderOptions.profile !== undefined ? { profile: orderOptions.profile } : {}),
        ...(replaced ? { replaces: replaced.certId } : {}),
      };
      const refusal = await budgets?.beginOrder(ca, domain, { exempt: replaced !== undefined, client: orderOptions.clientIp });
      if (refusal) {
        problems.push(`${ca}: rate-limit budget ${refusal.budget} spent until ${refusal.freesAt.toISOString()}`);
        continue;
      }
      this.events.emit({ type: 'issuance-started', domain, ca, reason });
      try {
        const issued = await production.issue(domain, issueOptions);
        return { ...issued, from: production, ...(replaced ? { replaced } : {}) };
      } catch (err) {
        // Our storage, not the CA: no backoff. A solver's failed write reaches us wrapped in the
        // ACME step's error, which names the domain and the step; keep that message.
        const storageFailure = storageErrorIn(err);
        if (storageFailure === err) throw err;
        if (storageFailure) throw new StorageError((err as Error).message, storageFailure.key, storageFailure.step, { cause: err });
        failedCas.push(ca);
        problems.push(`${ca}: ${(err as Error).message}`);
        lastStep = stepOf(err, 'issue');
        const caPause = caPauseOf(err);
        if (caPause) await this.retry.pauseCa(ca, caPause.untilMs, caPause.reason).catch((e: unknown) => logger.warn({ domain, step: 'ca-pause', ca, err: e }, 'could not record the CA pause'));
        else retryAfterMs = maxDefined(retryAfterMs, retryAfterOf(err));
        if (isFailedAuthorization(err)) await budgets?.recordFailedAuthorization(ca, domain).catch((e: unknown) => logger.warn({ domain, step: 'budget', ca, err: e }, 'could not count the failed authorization'));
        if (this.issuers.length > 1) logger.warn({ domain, step: lastStep, ca, err }, 'issuer failed; trying the next one');
      }
    }
    const message = `no certificate for ${domain}: ${problems.join('; ')}`;
    if (failedCas.length === 0) throw new IssuanceSkipped(message);
    throw new IssuersFailed(message, lastStep, failedCas, recoveredCas, retryAfterMs);
  }

  /** Runs a storage operation, retrying storage errors with backoff (250 ms doubling to 5 s). */
  private retryStorage<T>(domain: string, step: string, op: () => Promise<T>, budgetMs = this.opts.storageRetryMs ?? 60_000): Promise<T> {
    return retryStorageErrors(
      op,
      { budgetMs, initialDelayMs: 250, maxDelayMs: 5_000 },
      { logger: this.opts.logger, fields: { domain, step }, message: 'storage unavailable; retrying with backoff' },
    );
  }

  private announce(event: Omit<CertificateEvent, 'origin'>): void {
    this.bus?.publish(CERTIFICATE_EVENTS, JSON.stringify({ ...event, origin: this.origin })).catch((err: unknown) => {
      this.opts.logger.warn({ domain: event.domain, step: 'announce', err }, 'could not announce certificate change');
    });
  }

  /** Another process changed a certificate: stop serving our copy, and load theirs. */
  private onRemoteChange(raw: string): void {
    let event: CertificateEvent;
    try {
      event = JSON.parse(raw) as CertificateEvent;
    } catch {
      return;
    }
    if (event.origin === this.origin || typeof event.domain !== 'string') return;
    const { cache, logger } = this.opts;
    this.denied.delete(event.domain);
    this.failures.delete(event.domain);
    const cached = cache.peek(event.domain);
    if (!cached || (event.event === 'updated' && cached.fingerprint256 === event.fingerprint256)) return;
    cache.delete(event.domain);
    logger.info({ domain: event.domain, step: 'cache-coherence', event: event.event }, 'certificate changed elsewhere; cache entry replaced');
    if (event.event === 'updated') {
      this.fromStorage(event.domain).catch((err: unknown) => logger.warn({ domain: event.domain, step: 'cache-coherence', err }, 'reload after remote change failed'));
    }
  }
}

function maxDefined(a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined ? b : b === undefined ? a : Math.max(a, b);
}

function usable(bundle: CertificateBundle): boolean {
  return bundle.notAfter.getTime() > Date.now();
}

function stepOf(err: unknown, fallback: string): string {
  return (err as { step?: string }).step ?? fallback;
}
