// The renewal scheduler, run by the maintainer leader. Each tick lists only the due hours of the
// renewal index (src/issuance/renewal-index.ts) and, for every entry whose time has come:
//   - drops it when its certificate was replaced or deleted since;
//   - works out when the certificate should be renewed: the CA's ARI window when the directory
//     offers renewalInfo (asked again after its Retry-After), else the lifetime fraction with
//     per-name jitter (src/maintain/timing.ts);
//   - not yet: moves the entry to the hour of that time;
//   - due: asks the on-demand policy again (not for a managed certificate, `isManaged`: the
//     config lists it, it needs no approval). Denied and still valid → kept, not renewed (looked at
//     again later); denied and expired → deleted. Approved → renewed through
//     CertificateManager.renew, at most `concurrency` at a time; handshakes keep being served the
//     old certificate until the new one is stored. A failed renewal is retried when the name's
//     shared backoff ends (1 min, 10 min, 100 min, then daily).
// A cursor (the oldest hour that may still hold entries) keeps ticks from re-listing the past.
import { setTimeout as sleep } from 'node:timers/promises';
import type { CertificateIssuer } from '../acme/issuers.ts';
import { ariCertId, nextFetchAt, pickInWindow } from '../acme/plumbing/ari.ts';
import { backoffDelay, LETS_ENCRYPT_SCHEDULE } from '../issuance/backoff.ts';
import type { Logger } from '../util/log.ts';
import type { PolicyDecision } from '../policy/policy.ts';
import { loadCertificate, type CertificateBundle } from '../issuance/store.ts';
import { keys } from '../storage/keys.ts';
import { getJson, type Storage } from '../storage/storage.ts';
import type { ObtainOutcome, RenewOptions, ReplacedCertificate } from '../issuance/manager.ts';
import { Semaphore } from '../util/semaphore.ts';
import { bucketsBetween, domainOfIndexKey, HOUR_MS, hourBucket, putRenewalEntry, renewalKeyOf, type RenewalEntry } from '../issuance/renewal-index.ts';
import { renewalTime } from './timing.ts';

/** The scheduler's parts and the renewal.* settings it applies. */
export interface RenewalSchedulerOptions {
  storage: Storage;
  manager: {
    renew(domain: string, opts?: RenewOptions): Promise<ObtainOutcome>;
    delete(domain: string, reason: string): Promise<void>;
    /** The name's shared backoff after failures (CertificateManager.retryAt). */
    retryAt?(domain: string): Promise<number | null | undefined>;
  };
  policy: { decide(domain: string): Promise<PolicyDecision> };
  /** Whether `domain` is a managed certificate's first name (config `certificates`): renewed without asking the policy. */
  isManaged?: (domain: string) => boolean;
  /**
   * The issuer whose directory issued a certificate (its `renewalWindow` answers ARI), if it is
   * still configured. Without one, renewal times come from the lifetime fraction.
   */
  issuerOf?: (directory: string) => Pick<CertificateIssuer, 'renewalWindow'> | undefined;
  /** acme.profile, passed to renewals (the client drops it when the CA does not advertise it). */
  profile?: string;
  fraction: number;
  jitterMs: number;
  concurrency: number;
  logger: Logger;
  now?: () => number;
}

/**
 * After a failed renewal that left the name no backoff of its own (a spent budget, a paused CA, a
 * storage outage): 1 min, 10 min, 100 min, then daily, the same schedule as the name's.
 */
export function renewalBackoffMs(failures: number): number {
  return backoffDelay(LETS_ENCRYPT_SCHEDULE, failures);
}

/** A name the policy now denies is looked at again this often while its certificate is valid. */
const POLICY_RECHECK_MS = HOUR_MS;
/** ARI fetch failed: try again after this long (the lifetime fraction applies meanwhile). */
const ARI_FAILURE_RETRY_MS = HOUR_MS;

/**
 * Counts since start, for tests and logs: renewals started, renewed, failed, running now, most at once.
 */
export interface RenewalStats {
  started: number;
  renewed: number;
  failed: number;
  running: number;
  maxRunning: number;
}

/**
 * The scheduler of the header. tick() handles the due hours once (the leader calls it every
 * checkInterval); renewIfDue() queues one loaded certificate whose time has come.
 */
export class RenewalScheduler {
  private readonly slots: Semaphore;
  private readonly active = new Set<string>();
  /** Names a handshake started a renewal for (policy check and retries included). */
  private readonly kicked = new Set<string>();
  private readonly inflight = new Set<Promise<void>>();
  private readonly now: () => number;
  private cursor: string | undefined;
  private ticking: Promise<void> | undefined;
  readonly stats: RenewalStats = { started: 0, renewed: 0, failed: 0, running: 0, maxRunning: 0 };

  constructor(private readonly opts: RenewalSchedulerOptions) {
    this.slots = new Semaphore(opts.concurrency);
    this.now = opts.now ?? Date.now;
  }

  /** Names being renewed by this scheduler now. */
  get renewing(): ReadonlySet<string> {
    return this.active;
  }

  /** Looks at every due entry once. Concurrent calls share one pass. */
  tick(): Promise<void> {
    this.ticking ??= this.pass().finally(() => {
      this.ticking = undefined;
    });
    return this.ticking;
  }

  /** Resolves when the renewals started so far have finished. */
  async idle(): Promise<void> {
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight]);
  }

  /**
   * A handshake loaded a certificate from storage: if it is inside its renewal time, renew it in
   * the background (policy first) while the handshake is served the current one.
   */
  renewIfDue(bundle: CertificateBundle): void {
    const { domain } = bundle;
    if (this.active.has(domain) || this.kicked.has(domain)) return;
    const now = this.now();
    const at = renewalTime(domain, bundle.notBefore.getTime(), bundle.notAfter.getTime(), this.opts);
    if (at > now) return;
    this.opts.logger.info({ domain, step: 'renewal-on-handshake', notAfter: bundle.notAfter.toISOString() }, 'certificate served inside its renewal time; renewing in the background');
    this.kicked.add(domain);
    this.track(
      (async () => {
        const decision = await this.decide(domain);
        if (!decision.allowed) return; // the scheduler deals with denied names
        // The handshake's own load of this name is still in flight and renew() would join it:
        // try again shortly until the renewal really runs.
        for (let attempt = 0; attempt < 10; attempt++) {
          if (await this.renew(domain, undefined, undefined, bundle.fingerprint256)) return;
          await sleep(100 * (attempt + 1));
        }
      })().finally(() => this.kicked.delete(domain)),
    );
  }

  private track(p: Promise<void>): void {
    const tracked = p.catch((err: unknown) => this.opts.logger.error({ step: 'renewal', err }, 'renewal task failed')).finally(() => this.inflight.delete(tracked));
    this.inflight.add(tracked);
  }

  private async pass(): Promise<void> {
    const { storage, logger } = this.opts;
    const now = this.now();
    const current = hourBucket(now);
    const stored = this.cursor ?? (await storage.get(keys.renewalCursor))?.toString('utf8').trim();
    let cursor = stored && /^\d{4}-\d\d-\d\dT\d\d$/.test(stored) ? stored : hourBucket(now - HOUR_MS);
    if (cursor > current) cursor = current;
    let oldestKept: string | undefined;
    for (const bucket of bucketsBetween(cursor, current)) {
      const entries = await storage.list(keys.renewalIndexBucket(bucket));
      let kept = 0;
      for (const key of entries) {
        try {
          if (await this.consider(key, now)) kept++;
        } catch (err) {
          kept++;
          logger.warn({ domain: domainOfIndexKey(key), step: 'renewal-check', err }, 'could not check certificate for renewal');
        }
      }
      if (bucket < current && kept > 0) oldestKept ??= bucket;
    }
    // Entries are only ever filed at the current hour or later, so everything before the oldest
    // hour still holding entries is done. One hour of overlap covers a save at an hour boundary.
    const next = oldestKept ?? hourBucket(now - HOUR_MS);
    if (next !== stored) await storage.put(keys.renewalCursor, next);
    this.cursor = next;
  }

  /** Looks at one index entry; true when it stays under this key. */
  private async consider(key: string, now: number): Promise<boolean> {
    const { storage, logger } = this.opts;
    const domain = domainOfIndexKey(key);
    if (this.active.has(domain)) return true;
    const entry = await getJson<RenewalEntry>(storage, key);
    if (!entry) {
      await storage.delete(key);
      return false;
    }
    if (entry.checkAt > now) return true;

    const bundle = await loadCertificate(storage, [entry.ca], domain);
    if (!bundle || bundle.fingerprint256 !== entry.fingerprint256) {
      await this.dropIfUnchanged(key, entry);
      return false;
    }

    const notAfter = Date.parse(entry.notAfter);
    let renewAt = renewalTime(domain, Date.parse(entry.notBefore), notAfter, this.opts);
    let replaces: ReplacedCertificate | undefined;
    const issuer = entry.directory ? this.opts.issuerOf?.(entry.directory) : undefined;
    const renewalWindow = issuer?.renewalWindow?.bind(issuer);
    if (renewalWindow) {
      await this.refreshAri(renewalWindow, entry, bundle, now);
      if (entry.ari?.window) renewAt = entry.ari.window.renewAt;
      // The certificate's own CA answered for it: an order to that CA may name it in `replaces`.
      if (entry.ari?.supported) replaces = { certId: entry.ari.certId, ca: entry.ca };
    }

    if (renewAt > now) {
      entry.checkAt = Math.min(renewAt, entry.ari?.nextFetchAt ?? Infinity);
      return this.move(key, entry);
    }

    const decision = await this.decide(domain);
    if (!decision.allowed) {
      if (notAfter <= now) {
        logger.info({ domain, step: 'renewal-policy', allowed: false, reason: decision.reason }, 'policy denies renewal and the certificate has expired: deleting it');
        await this.opts.manager.delete(domain, `policy denied renewal: ${decision.reason}`);
        await storage.delete(key);
        return false;
      }
      if (entry.deniedAt === undefined) {
        logger.info({ domain, step: 'renewal-policy', allowed: false, reason: decision.reason, notAfter: entry.notAfter }, 'policy denies renewal: certificate kept until it expires, not renewed');
      }
      entry.deniedAt ??= now;
      entry.checkAt = Math.min(notAfter, now + POLICY_RECHECK_MS);
      return this.move(key, entry);
    }
    delete entry.deniedAt;
    this.active.add(domain);
    this.track(this.renew(domain, replaces, { key, entry }, entry.fingerprint256).then(() => undefined));
    return true;
  }

  /** The policy's answer for a renewal; a managed certificate needs none. */
  private decide(domain: string): Promise<PolicyDecision | { allowed: true; source: 'managed' }> {
    if (this.opts.isManaged?.(domain)) return Promise.resolve({ allowed: true, source: 'managed' });
    return this.opts.policy.decide(domain);
  }

  /** Fetches the ARI window when it is time to; updates `entry.ari` in place. */
  private async refreshAri(renewalWindow: NonNullable<CertificateIssuer['renewalWindow']>, entry: RenewalEntry, bundle: CertificateBundle, now: number): Promise<void> {
    if (entry.ari && entry.ari.nextFetchAt > now) return;
    const certId = entry.ari?.certId ?? ariCertId(bundle.certPem);
    if (!certId) return;
    try {
      const window = await renewalWindow(certId, entry.domain);
      if (!window) {
        entry.ari = { certId, supported: false, nextFetchAt: now + 24 * HOUR_MS };
        return;
      }
      const renewAt = pickInWindow(entry.domain, window, now);
      entry.ari = { certId, supported: true, nextFetchAt: nextFetchAt(window, now), window: { start: window.start, end: window.end, renewAt } };
      this.opts.logger.info(
        { domain: entry.domain, step: 'ari', windowStart: new Date(window.start).toISOString(), windowEnd: new Date(window.end).toISOString(), renewAt: new Date(renewAt).toISOString(), retryAfterMs: window.retryAfterMs },
        'ARI renewal window fetched',
      );
    } catch (err) {
      this.opts.logger.warn({ domain: entry.domain, step: 'ari', err }, 'could not fetch the ARI renewal window; using the lifetime fraction meanwhile');
      // `replaces` only once the CA has answered for this certificate.
      entry.ari = { ...(entry.ari ?? { certId, supported: false }), nextFetchAt: now + ARI_FAILURE_RETRY_MS };
    }
  }

  /** False when nothing was attempted (renew() joined a concurrent load and returned the old certificate). */
  private async renew(domain: string, replaces: ReplacedCertificate | undefined, from: { key: string; entry: RenewalEntry } | undefined, oldFingerprint: string): Promise<boolean> {
    const { logger, storage } = this.opts;
    this.active.add(domain);
    const release = await this.slots.acquire();
    this.stats.started++;
    this.stats.running++;
    this.stats.maxRunning = Math.max(this.stats.maxRunning, this.stats.running);
    try {
      const started = this.now();
      logger.info({ domain, step: 'renewal-start', ...(replaces ? { replaces: replaces.certId, replacesCa: replaces.ca } : {}) }, 'renewing certificate');
      const outcome = await this.opts.manager.renew(domain, {
        reason: 'renewal',
        ...(replaces ? { replaces } : {}),
        ...(this.opts.profile ? { profile: this.opts.profile } : {}),
        replacing: oldFingerprint,
      });
      if (outcome.kind === 'ready' && outcome.certificate.fingerprint256 === oldFingerprint) {
        // renew() joined a handshake's load of the same name and got the old certificate back:
        // nothing was renewed. The entry stays due; the next tick tries again.
        this.stats.started--;
        logger.debug({ domain, step: 'renewal-start' }, 'renewal met a concurrent load of the same name; retrying');
        return false;
      }
      if (outcome.kind === 'ready' && outcome.source === 'storage') {
        // Storage already held a newer certificate under the lock (the handshake's renewal and a
        // scheduler pass both found this one due; or another instance's): nothing was ordered.
        this.stats.started--;
        logger.debug({ domain, step: 'renewal-start' }, 'already renewed meanwhile; nothing ordered');
        if (from) await this.dropIfUnchanged(from.key, from.entry);
        return true;
      }
      if (outcome.kind === 'ready') {
        this.stats.renewed++;
        logger.info({ domain, step: 'renewed', ms: this.now() - started, notAfter: new Date(outcome.certificate.notAfter).toISOString() }, 'certificate renewed');
        // The save filed the new certificate; this entry is about the old one.
        if (from) await this.dropIfUnchanged(from.key, from.entry);
        return true;
      }
      this.stats.failed++;
      if (!from) return true;
      const failures = (from.entry.failures ?? 0) + 1;
      // The name's own backoff (shared through storage, recorded by the manager) decides when it
      // may be ordered again; a second, local count would drift from it.
      const shared = await this.opts.manager.retryAt?.(domain).catch(() => undefined);
      const retryAt = typeof shared === 'number' && shared > this.now() ? shared : this.now() + renewalBackoffMs(failures);
      logger.warn({ domain, step: 'renewal-failed', failures, retryAt: new Date(retryAt).toISOString(), reason: outcome.reason }, 'renewal failed; will retry');
      const current = await getJson<RenewalEntry>(storage, from.key);
      if (current && current.fingerprint256 === from.entry.fingerprint256) {
        await this.move(from.key, { ...from.entry, failures, checkAt: retryAt });
      }
      return true;
    } finally {
      this.stats.running--;
      release();
      this.active.delete(domain);
    }
  }

  /** Files `entry` under the hour of its checkAt; true when that is `key` itself. */
  private async move(key: string, entry: RenewalEntry): Promise<boolean> {
    const next = renewalKeyOf(entry);
    await putRenewalEntry(this.opts.storage, entry);
    if (next !== key) await this.opts.storage.delete(key);
    return next === key;
  }

  /** Deletes `key` unless a save has meanwhile put a newer certificate's entry there. */
  private async dropIfUnchanged(key: string, entry: RenewalEntry): Promise<void> {
    const current = await getJson<RenewalEntry>(this.opts.storage, key);
    if (current && current.fingerprint256 !== entry.fingerprint256) return;
    await this.opts.storage.delete(key);
  }
}
