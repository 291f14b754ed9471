// Finds or obtains the certificate for a name that is not in the memory cache:
// storage → policy → one issuance per name (in this process: a shared promise; across
// processes and instances: a storage lock) under a global cap on concurrent CA orders.
// Every change is announced on the cluster bus so other processes' caches drop the old one.
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AcmeIssuer, IssueOptions } from '../acme/issuer.ts';
import { CertificateEvents } from '../events.ts';
import type { Logger } from '../log.ts';
import type { IssuanceLimits } from '../policy/limits.ts';
import type { OnDemandPolicy } from '../policy/policy.ts';
import type { ClusterBus } from '../storage/bus.ts';
import { deleteCertificate, loadCertificate, saveCertificate, type CertificateBundle } from '../storage/certificates.ts';
import { keys } from '../storage/layout.ts';
import { StorageError, type Lock, type Storage } from '../storage/storage.ts';
import { LruCache } from '../util/lru.ts';
import { Semaphore } from '../util/semaphore.ts';
import type { CachedCertificate, CertificateCache } from './cache.ts';

export const CERTIFICATE_EVENTS = 'certificates';

export interface CertificateManagerOptions {
  storage: Storage;
  issuer: AcmeIssuer;
  policy: OnDemandPolicy;
  cache: CertificateCache;
  logger: Logger;
  maxConcurrentIssuances: number;
  /** How long a name that is neither stored nor approved is answered from memory. */
  deniedTtlMs?: number;
  /** First wait after a failed issuance for a name; doubles per failure up to maxFailureBackoffMs. */
  failureBackoffMs?: number;
  maxFailureBackoffMs?: number;
  /** Lock expiry; the holder refreshes it at a third of this while it works. */
  issueLockTtlMs?: number;
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

export interface RenewOptions extends IssueOptions {
  /** Why: 'renewal' (scheduler) or 'admin' (API call). */
  reason?: 'renewal' | 'admin';
}

export type ObtainOutcome =
  | { kind: 'ready'; certificate: CachedCertificate; source: 'storage' | 'issued' }
  | { kind: 'denied'; reason: string; rateLimited?: true }
  | { kind: 'failed'; reason: string };

interface FailureState {
  failures: number;
  retryAt: number;
  reason: string;
}

interface CertificateEvent {
  domain: string;
  event: 'updated' | 'deleted';
  fingerprint256?: string;
  origin: string;
}

export class CertificateManager {
  private readonly inflight = new Map<string, Promise<ObtainOutcome>>();
  private readonly denied: LruCache<string, string>;
  private readonly failures: LruCache<string, FailureState>;
  private readonly issuances: Semaphore;
  private readonly origin = randomUUID();
  private bus: ClusterBus | undefined;
  private unsubscribe: (() => Promise<void>) | undefined;
  private stopReconnectListener: (() => void) | undefined;
  readonly events: CertificateEvents;

  constructor(private readonly opts: CertificateManagerOptions) {
    this.issuances = new Semaphore(opts.maxConcurrentIssuances);
    this.denied = new LruCache(opts.maxNameEntries ?? 100_000);
    this.failures = new LruCache(opts.maxNameEntries ?? 100_000);
    this.events = opts.events ?? new CertificateEvents(opts.logger);
  }

  /** Issuances running or queued for a CA slot, in this process. */
  get pending(): number {
    return this.inflight.size;
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
    const { cache, storage, issuer, logger } = this.opts;
    const domains = cache.domains();
    let replaced = 0;
    let next = 0;
    const worker = async () => {
      while (next < domains.length) {
        const domain = domains[next++]!;
        try {
          const stored = await loadCertificate(storage, [issuer.ca], domain);
          const cached = cache.peek(domain);
          if (!cached || stored?.fingerprint256 === cached.fingerprint256) continue;
          replaced++;
          if (stored && usable(stored)) cache.add(stored);
          else cache.delete(domain);
        } catch (err) {
          logger.warn({ domain, step: 'cache-revalidate', err }, 'could not re-check cached certificate');
        }
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
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

  /** Replaces the certificate now, whatever storage holds (renewal, admin action). */
  renew(domain: string, opts: RenewOptions = {}): Promise<ObtainOutcome> {
    return this.once(domain, async () => {
      const reason = opts.reason ?? 'renewal';
      try {
        const current = this.opts.cache.peek(domain) ?? (await this.fromStorage(domain));
        const { reason: _reason, ...issueOptions } = opts;
        return await this.issueUnderLock(domain, reason, { replacing: current?.fingerprint256 ?? 'none', issueOptions });
      } catch (err) {
        this.opts.logger.error({ domain, step: stepOf(err, 'renew'), ca: this.opts.issuer.ca, err }, 'could not renew certificate');
        this.events.emit({ type: 'issuance-failed', domain, ca: this.opts.issuer.ca, step: stepOf(err, 'renew'), error: (err as Error).message, renewal: true });
        return { kind: 'failed', reason: (err as Error).message };
      }
    });
  }

  /**
   * Stops serving and forgets the certificate for `domain` everywhere: storage, this cache,
   * and (through the bus) every other process's cache.
   */
  async delete(domain: string, reason: string): Promise<void> {
    const { storage, cache, issuer } = this.opts;
    await this.retryStorage(domain, 'delete', () => deleteCertificate(storage, issuer.ca, domain));
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
    const { logger, issuer } = this.opts;
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

      const failure = this.failures.get(domain);
      if (failure && failure.retryAt > Date.now()) {
        return { kind: 'failed', reason: `in backoff after ${failure.failures} failure(s) until ${new Date(failure.retryAt).toISOString()}: ${failure.reason}` };
      }

      return await this.issueUnderLock(domain, decision.source);
    } catch (err) {
      const reason = (err as Error).message;
      // A storage outage is not the name's fault: no CA backoff, the next handshake tries again.
      if (!(err instanceof StorageError)) this.recordFailure(domain, reason);
      logger.error({ domain, step: stepOf(err, 'obtain'), ca: issuer.ca, err }, 'could not obtain certificate');
      this.events.emit({ type: 'issuance-failed', domain, ca: issuer.ca, step: stepOf(err, 'obtain'), error: reason, renewal: false });
      return { kind: 'failed', reason };
    }
  }

  private async fromStorage(domain: string): Promise<CachedCertificate | null> {
    const started = performance.now();
    const bundle = await this.retryStorage(domain, 'storage-load', () => loadCertificate(this.opts.storage, [this.opts.issuer.ca], domain));
    if (!bundle || !usable(bundle)) return null;
    const entry = this.opts.cache.add(bundle);
    this.opts.onStorageLoad?.(bundle);
    this.opts.logger.debug({ domain, step: 'storage-load', ca: bundle.ca, ms: Math.round(performance.now() - started) }, 'certificate loaded from storage');
    return entry;
  }

  /**
   * Issues under the per-name storage lock. Without `replacing`, a certificate found in storage
   * once the lock is held wins (another process just issued it). With `replacing` (a renewal),
   * only a stored certificate other than the one being replaced does.
   */
  private async issueUnderLock(
    domain: string,
    approvedBy: string,
    { replacing, issueOptions = {} }: { replacing?: string; issueOptions?: IssueOptions } = {},
  ): Promise<ObtainOutcome> {
    const { storage, issuer, logger } = this.opts;
    const ttlMs = this.opts.issueLockTtlMs ?? 60_000;
    const started = performance.now();
    const lock: Lock = await this.retryStorage(domain, 'lock', () =>
      storage.lock(keys.issueLock(domain), { ttlMs, waitMs: this.opts.issueLockWaitMs ?? 180_000 }),
    );
    const keepAlive = setInterval(() => {
      lock.refresh().catch((err: unknown) => logger.warn({ domain, step: 'lock-refresh', err }, 'issuance lock refresh failed'));
    }, ttlMs / 3);
    keepAlive.unref();
    try {
      // Another process may have finished while we waited for the lock.
      const stored = await this.fromStorage(domain);
      if (stored && (replacing === undefined || stored.fingerprint256 !== replacing)) {
        return { kind: 'ready', certificate: stored, source: 'storage' };
      }

      const release = await this.issuances.acquire();
      let bundle: CertificateBundle;
      let challenge: string;
      try {
        logger.info({ domain, step: 'issue-start', ca: issuer.ca, approvedBy, waitedMs: Math.round(performance.now() - started) }, 'issuing certificate');
        const reason = replacing === undefined ? 'on-demand' : approvedBy === 'admin' ? 'admin' : 'renewal';
        this.events.emit({ type: 'issuance-started', domain, ca: issuer.ca, reason });
        const issued = await issuer.issue(domain, issueOptions);
        challenge = issued.challenge;
        bundle = await this.retryStorage(domain, 'store', () => saveCertificate(storage, { domain, ca: issuer.ca, directory: issuer.directory, ...issued }), 300_000);
      } finally {
        release();
      }
      const entry = this.opts.cache.add(bundle);
      this.failures.delete(domain);
      this.announce({ domain, event: 'updated', fingerprint256: bundle.fingerprint256 });
      const ms = Math.round(performance.now() - started);
      logger.info({ domain, step: 'issued', ca: issuer.ca, challenge, notAfter: bundle.notAfter.toISOString(), ms }, 'certificate issued and stored');
      this.events.emit({ type: replacing === undefined ? 'issuance-succeeded' : 'renewed', domain, ca: issuer.ca, notAfter: bundle.notAfter.toISOString(), ms, challenge });
      return { kind: 'ready', certificate: entry, source: 'issued' };
    } finally {
      clearInterval(keepAlive);
      await lock.release().catch((err: unknown) => logger.warn({ domain, step: 'lock-release', err }, 'issuance lock release failed'));
    }
  }

  /** Runs a storage operation, retrying storage errors with backoff (250 ms doubling to 5 s). */
  private async retryStorage<T>(domain: string, step: string, op: () => Promise<T>, budgetMs = this.opts.storageRetryMs ?? 60_000): Promise<T> {
    const deadline = Date.now() + budgetMs;
    let delay = 250;
    for (let attempt = 1; ; attempt++) {
      try {
        return await op();
      } catch (err) {
        if (!(err instanceof StorageError) || Date.now() + delay > deadline) throw err;
        if (attempt === 1) this.opts.logger.warn({ domain, step, err: err.message, retryInMs: delay }, 'storage unavailable; retrying with backoff');
        await sleep(delay);
        delay = Math.min(delay * 2, 5000);
      }
    }
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

  private recordFailure(domain: string, reason: string): void {
    const base = this.opts.failureBackoffMs ?? 60_000;
    const max = this.opts.maxFailureBackoffMs ?? 3_600_000;
    const failures = (this.failures.peek(domain)?.failures ?? 0) + 1;
    const delay = Math.min(max, base * 2 ** (failures - 1));
    this.failures.set(domain, { failures, retryAt: Date.now() + delay, reason });
  }
}

function usable(bundle: CertificateBundle): boolean {
  return bundle.notAfter.getTime() > Date.now();
}

function stepOf(err: unknown, fallback: string): string {
  return (err as { step?: string }).step ?? fallback;
}
