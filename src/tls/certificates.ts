// Finds or obtains the certificate for a name that is not in the memory cache:
// storage → policy → one issuance per name (in this process: a shared promise; across
// processes: a storage lock) under a global cap on concurrent CA orders.
import type { AcmeIssuer } from '../acme/issuer.ts';
import type { Logger } from '../log.ts';
import type { OnDemandPolicy } from '../policy/policy.ts';
import { loadCertificate, saveCertificate, type CertificateBundle } from '../storage/certificates.ts';
import { keys } from '../storage/layout.ts';
import type { Lock, Storage } from '../storage/storage.ts';
import { LruCache } from '../util/lru.ts';
import { Semaphore } from '../util/semaphore.ts';
import type { CachedCertificate, CertificateCache } from './cache.ts';

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
}

export type ObtainOutcome =
  | { kind: 'ready'; certificate: CachedCertificate; source: 'storage' | 'issued' }
  | { kind: 'denied'; reason: string }
  | { kind: 'failed'; reason: string };

interface FailureState {
  failures: number;
  retryAt: number;
  reason: string;
}

export class CertificateManager {
  private readonly inflight = new Map<string, Promise<ObtainOutcome>>();
  private readonly denied: LruCache<string, string>;
  private readonly failures = new LruCache<string, FailureState>(100_000);
  private readonly issuances: Semaphore;

  constructor(private readonly opts: CertificateManagerOptions) {
    this.issuances = new Semaphore(opts.maxConcurrentIssuances);
    this.denied = new LruCache(100_000);
  }

  /** Issuances running or queued for a CA slot, in this process. */
  get pending(): number {
    return this.inflight.size;
  }

  /**
   * Resolves to a ready certificate, or why there is none. Never rejects. Concurrent calls for
   * one name share one attempt; the attempt goes on even if every caller stops waiting.
   */
  obtain(domain: string): Promise<ObtainOutcome> {
    let attempt = this.inflight.get(domain);
    if (!attempt) {
      attempt = this.attempt(domain).finally(() => this.inflight.delete(domain));
      this.inflight.set(domain, attempt);
    }
    return attempt;
  }

  private async attempt(domain: string): Promise<ObtainOutcome> {
    const { logger, issuer } = this.opts;
    const deniedReason = this.denied.get(domain);
    if (deniedReason !== undefined) return { kind: 'denied', reason: deniedReason };
    try {
      const stored = await this.fromStorage(domain);
      if (stored) return { kind: 'ready', certificate: stored, source: 'storage' };

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
      this.recordFailure(domain, reason);
      logger.error({ domain, step: (err as { step?: string }).step ?? 'obtain', ca: issuer.ca, err }, 'could not obtain certificate');
      return { kind: 'failed', reason };
    }
  }

  private async fromStorage(domain: string): Promise<CachedCertificate | null> {
    const started = performance.now();
    const bundle = await loadCertificate(this.opts.storage, [this.opts.issuer.ca], domain);
    if (!bundle || !this.usable(bundle)) return null;
    const entry = this.opts.cache.add(bundle);
    this.opts.logger.debug({ domain, step: 'storage-load', ca: bundle.ca, ms: Math.round(performance.now() - started) }, 'certificate loaded from storage');
    return entry;
  }

  private usable(bundle: CertificateBundle): boolean {
    return bundle.notAfter.getTime() > Date.now();
  }

  private async issueUnderLock(domain: string, approvedBy: string): Promise<ObtainOutcome> {
    const { storage, issuer, logger } = this.opts;
    const ttlMs = this.opts.issueLockTtlMs ?? 60_000;
    const started = performance.now();
    let lock: Lock;
    try {
      lock = await storage.lock(keys.issueLock(domain), { ttlMs, waitMs: this.opts.issueLockWaitMs ?? 180_000 });
    } catch (err) {
      throw Object.assign(new Error(`${domain}: could not take the issuance lock: ${(err as Error).message}`, { cause: err }), { step: 'lock' });
    }
    const keepAlive = setInterval(() => {
      lock.refresh().catch((err: unknown) => logger.warn({ domain, step: 'lock-refresh', err }, 'issuance lock refresh failed'));
    }, ttlMs / 3);
    keepAlive.unref();
    try {
      // Another process may have finished while we waited for the lock.
      const stored = await this.fromStorage(domain);
      if (stored) return { kind: 'ready', certificate: stored, source: 'storage' };

      const release = await this.issuances.acquire();
      try {
        logger.info({ domain, step: 'issue-start', ca: issuer.ca, approvedBy, waitedMs: Math.round(performance.now() - started) }, 'issuing certificate');
        const issued = await issuer.issue(domain);
        const bundle = await saveCertificate(storage, { domain, ca: issuer.ca, directory: issuer.directory, ...issued });
        const entry = this.opts.cache.add(bundle);
        this.failures.delete(domain);
        logger.info(
          { domain, step: 'issued', ca: issuer.ca, challenge: issued.challenge, notAfter: bundle.notAfter.toISOString(), ms: Math.round(performance.now() - started) },
          'certificate issued and stored',
        );
        return { kind: 'ready', certificate: entry, source: 'issued' };
      } finally {
        release();
      }
    } finally {
      clearInterval(keepAlive);
      await lock.release().catch((err: unknown) => logger.warn({ domain, step: 'lock-release', err }, 'issuance lock release failed'));
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
