// The certificate manager: finds or obtains the certificate for a name that is not in the memory
// cache. An on-demand attempt (obtain), top to bottom:
//   1. one attempt per name in this process: concurrent callers share its promise;
//   2. a denial remembered in memory → denied (gates.ts, gate 1);
//   3. storage: a usable stored certificate → into the memory cache, served; skipped for a name
//      the stored-names filter (stored-names.ts) says is certainly not stored, so a flood of
//      random names costs no storage read before the gates refuse it. A certificate stored by a
//      writer not heard of yet is still found: read after a refusal (policy or abuse limits),
//      and by 5 before any order;
//   4. the gates: abuse limits, policy, the name's backoff, pre-flight (gates.ts);
//   5. one issuance per name across processes: a CA slot, then the name's lock (lock.ts), then
//      storage once more (another process may just have issued it);
//   6. the order, from each configured issuer in turn within the rate-limit budgets (failover.ts);
//   7. stored (store.ts), added to the stored-names filter, cached, the name's failures cleared,
//      and announced to every other
//      process's cache (onCacheInvalidation: tls/cache-sync.ts puts it on the bus);
//   on failure: logged, recorded for backoff unless the name is not at fault (failures.ts).
// A renewal (renew) skips 2-4 but for the backoff; an admin renewal skips the backoff too.
// A name covered by an active wildcard binding (deps.wildcardFor) gets the wildcard's stored
// certificate before step 2. A delegated name (obtainDelegated, admin API; DCV delegation) skips 2
// and 4: the admin's active binding approves it and its order validates by dns-01 at the platform's
// delegation zone, wherever its A/AAAA points (deps.solversFor picks the solvers of every order).
// A managed certificate (obtainManaged, at start; managed.ts) skips 2 and 4: storage (a stored
// certificate counts only if it names every name of the entry), then 5-7 with all its names in one
// order and the solvers managed.ts picks; its renewals order all its names the same way.
import type { ChallengeSolver } from '../acme/authorize.ts';
import type { IssuerChoice, CertificateIssuer } from '../acme/issuers.ts';
import { issuersKey } from '../acme/issuers.ts';
import { CertificateEvents } from './events.ts';
import type { AcmeConfig, LimitsConfig, OnDemandConfig } from '../config/schema.ts';
import type { Logger } from '../util/log.ts';
import type { OnDemandPolicy } from '../policy/policy.ts';
import type { Storage } from '../storage/storage.ts';
import { RetryState, type NameRetryState } from './backoff.ts';
import type { RateBudgets } from './budgets.ts';
import { IssuanceSkipped, IssuersFailed, stepOf } from './errors.ts';
import { IssuerFailover, type IssuanceReason, type OrderOptions, type ReplacedCertificate } from './failover.ts';
import { NameFailures } from './failures.ts';
import { AttemptGates, type ObtainRequest, type Refusal } from './gates.ts';
import type { IssuanceLimits } from './limits.ts';
import { underIssueLock } from './lock.ts';
import { certificateCovers, type ManagedCertificates, type ManagedOrder } from './managed.ts';
import type { CacheInvalidation, CachedCertificate, CertificateMemory } from './memory.ts';
import type { Preflight } from './preflight.ts';
import type { StoredNames } from './stored-names.ts';
import { IssuancePriority, IssuanceQueue } from './queue.ts';
import { deleteCertificate, findCertificate, isUsable, loadCertificate, saveCertificate, storageRetrier, type CertificateBundle, type RetryStorage, type StoredCertificate } from './store.ts';

export type { ObtainRequest, ReplacedCertificate };

/**
 * The config the manager applies, as parsed (test/support/config.ts builds it from the schema).
 * onDemand: maxConcurrentIssuances (CA orders at once in this process); askDenyCacheTtl (how long
 * a name that is neither stored nor approved is answered from memory); limits.maxQueuedIssuances
 * (on-demand issuances that may wait for a CA slot; a name beyond gets the fallback at once, with
 * no order; renewals and admin work are not bounded); limits.unknownNameCache (bound on the
 * per-name denied and failure-backoff memories). acme: retry (waits after failed issuances for a
 * name, shared through storage); lockTtl (expiry of the per-name issuance lock: how soon another
 * instance takes over a name whose issuing process died; the holder refreshes it while it works);
 * timeout (one order; another process's lock is waited for twice that).
 */
export interface ManagerConfig {
  onDemand: Pick<OnDemandConfig, 'maxConcurrentIssuances' | 'askDenyCacheTtl'> & { limits: Pick<LimitsConfig, 'maxQueuedIssuances' | 'unknownNameCache'> };
  acme: Pick<AcmeConfig, 'retry' | 'lockTtl' | 'timeout'>;
}

/** The manager's collaborators (built by the gateway's issuance part). */
export interface CertificateManagerDeps {
  storage: Storage;
  /** The first (preferred) issuer; with `issuers` unset, the only one. */
  issuer: CertificateIssuer;
  /** Every issuer in order of preference (acme.issuers); default: [{ production: issuer }]. */
  issuers?: IssuerChoice[];
  policy: OnDemandPolicy;
  /** The memory cache handshakes are served from (tls/cache.ts). */
  cache: CertificateMemory;
  logger: Logger;
  /** Rate-limit budgets shared through storage; none = unlimited. */
  budgets?: RateBudgets;
  /** Pre-flight self-check before on-demand orders; none = off. */
  preflight?: Preflight;
  /** How long storage errors (e.g. Redis down) are retried, with backoff, before giving up. */
  storageRetryMs?: number;
  /** Lifecycle events (issuance started/succeeded/failed, renewed, deleted). */
  events?: CertificateEvents;
  /** Rate limits on obtain() calls from handshakes that would start an issuance (onDemand.limits). */
  limits?: IssuanceLimits;
  /** Called with each certificate loaded from storage (the maintainer renews one that is due). */
  onStorageLoad?: (bundle: CertificateBundle) => void;
  /** The managed certificates (`certificates`): the names and solvers of their orders. */
  managed?: Pick<ManagedCertificates, 'orderFor' | 'keyOf'>;
  /**
   * DCV delegation: the solvers of an order for `domain` that has none chosen (on-demand, renewal,
   * admin), or undefined for the issuer's default. Asked once per order, under the name's lock.
   */
  solversFor?: (domain: string) => Promise<ChallengeSolver[] | undefined>;
  /**
   * The key (`*.<parent>`) of an active wildcard binding covering `domain`, or undefined; its
   * stored certificate is served for `domain` ahead of everything else in obtain().
   */
  wildcardFor?: (domain: string) => Promise<string | undefined>;
  /**
   * Names certainly not stored (stored-names.ts): step 3 reads storage only for the others.
   * None: every on-demand attempt reads storage. The manager adds every certificate it stores.
   */
  storedNames?: Pick<StoredNames, 'mightBeStored' | 'add'>;
}

/** How renew() orders: why, with which ACME profile, and which certificate an ARI renewal replaces. */
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
  /**
   * The SHA-256 fingerprint of the certificate the caller found due. Under the name's lock a
   * stored certificate with another fingerprint is returned (`source: 'storage'`) and nothing is
   * ordered: someone renewed it since the caller looked. Without it, whatever is current now is
   * replaced (an admin renewal).
   */
  replacing?: string;
}

/** What obtain() and renew() resolve to: a certificate ready to serve, or why there is none. */
export type ObtainOutcome = { kind: 'ready'; certificate: CachedCertificate; source: 'storage' | 'issued' } | Refusal;

/** Finds, issues, renews and deletes certificates (see the header); one per process. */
export class CertificateManager {
  private readonly inflight = new Map<string, Promise<ObtainOutcome>>();
  private readonly queue: IssuanceQueue;
  private readonly failures: NameFailures;
  private readonly gates: AttemptGates;
  private readonly failover: IssuerFailover;
  private readonly issuers: IssuerChoice[];
  /** Every CA certificates may be stored under, in order of preference. */
  private readonly cas: string[];
  private readonly retry: RetryState;
  private readonly retryStorage: RetryStorage;
  private readonly invalidationListeners = new Set<(change: CacheInvalidation) => void>();
  /** Lifecycle events of this manager's work (the one in deps, or its own). */
  readonly events: CertificateEvents;

  /** `config`: the onDemand and acme sections as parsed (ManagerConfig); `deps`: its collaborators. */
  constructor(
    private readonly config: ManagerConfig,
    private readonly deps: CertificateManagerDeps,
  ) {
    const { logger, storage } = deps;
    const { onDemand, acme } = config;
    this.queue = new IssuanceQueue(onDemand, logger);
    this.events = deps.events ?? new CertificateEvents(logger);
    this.issuers = deps.issuers ?? [{ production: deps.issuer }];
    this.cas = [...new Set(this.issuers.map((i) => i.production.ca))];
    this.retry = new RetryState(storage, acme.retry, issuersKey(this.issuers), logger);
    this.retryStorage = storageRetrier(logger, deps.storageRetryMs ?? 60_000);
    this.failures = new NameFailures({ state: this.retry, retry: acme.retry, limits: onDemand.limits, retryStorage: this.retryStorage, logger });
    this.gates = new AttemptGates({ policy: deps.policy, failures: this.failures, limits: deps.limits, preflight: deps.preflight, onDemand, logger });
    this.failover = new IssuerFailover({ issuers: this.issuers, retry: this.retry, failures: this.failures, budgets: deps.budgets, events: this.events, retryStorage: this.retryStorage, logger });
  }

  /** Issuances running or queued for a CA slot, in this process. */
  get pending(): number {
    return this.inflight.size;
  }

  /** The ACME work queue in this process: orders running, and waiting for a slot. */
  get issuanceQueue(): { running: number; waiting: number } {
    return this.queue.state;
  }

  /**
   * Hears every change this manager makes to stored certificates (issued, renewed, deleted), for
   * other processes' caches (tls/cache-sync.ts). Returns a function that stops it.
   */
  onCacheInvalidation(listener: (change: CacheInvalidation) => void): () => void {
    this.invalidationListeners.add(listener);
    return () => this.invalidationListeners.delete(listener);
  }

  /**
   * Resolves to a ready certificate, or why there is none. Never rejects. Concurrent calls for
   * one name share one attempt; the attempt goes on even if every caller stops waiting.
   */
  obtain(domain: string, request?: ObtainRequest): Promise<ObtainOutcome> {
    return this.once(domain, () => this.attempt(domain, request));
  }

  /**
   * Replaces the certificate now (renewal, admin action): the one `opts.replacing` names, else
   * whatever storage holds; a stored one other than that is returned, unordered. Renewals wait
   * behind on-demand work in the ACME queue and respect the name's backoff; an admin renewal
   * does not (it is the operator's way to retry a name that was given up). Never rejects.
   */
  renew(domain: string, opts: RenewOptions = {}): Promise<ObtainOutcome> {
    return this.once(domain, async () => {
      const { reason = 'renewal', replacing, ...orderOptions } = opts;
      try {
        if (reason === 'admin') {
          await this.retryStorage(domain, 'retry-state', () => this.failures.clear(domain));
        } else {
          const backoff = await this.failures.backoff(domain);
          if (backoff) return { kind: 'failed', reason: backoff };
        }
        const managed = this.deps.managed?.orderFor(domain);
        const current = replacing === undefined ? (this.deps.cache.peek(domain) ?? (await this.loadStored(domain))) : undefined;
        return await this.issueUnderLock(domain, reason, reason, { replacing: replacing ?? current?.fingerprint256 ?? 'none', orderOptions: { ...orderOptions, ...managed } });
      } catch (err) {
        return await this.failed(domain, err, true);
      }
    });
  }

  /**
   * The managed certificate whose first name is `key` (managed.ts): from storage when one there
   * names all its names, else one order for all of them under the name's lock, so instances
   * starting together place one order. No policy. Resolves `failed` without an order when `key`
   * is no entry or no solver can validate its names (logged, naming the entry). Never rejects.
   */
  obtainManaged(key: string): Promise<ObtainOutcome> {
    return this.once(key, async () => {
      let order: ManagedOrder | undefined;
      try {
        order = this.deps.managed?.orderFor(key);
        if (!order) throw new Error(`${key} is not the first name of a managed certificate (step: managed)`);
      } catch (err) {
        this.deps.logger.error({ domain: key, step: stepOf(err, 'managed'), err }, 'managed certificate not ordered');
        return { kind: 'failed', reason: (err as Error).message };
      }
      try {
        const stored = await this.loadStored(key, order.names);
        if (stored) return { kind: 'ready', certificate: stored, source: 'storage' };
        const backoff = await this.failures.backoff(key);
        if (backoff) return { kind: 'failed', reason: backoff };
        return await this.issueUnderLock(key, 'managed certificate', 'managed', { orderOptions: order, names: order.names });
      } catch (err) {
        return await this.failed(key, err, false);
      }
    });
  }

  /**
   * A registry-bound name (or wildcard) whose DCV delegation CNAME the caller checked: storage
   * first, then (outside its backoff) an order under the name's lock, no policy or pre-flight
   * (its A/AAAA may point elsewhere; deps.solversFor gives the order dns-01 via the delegation
   * zone). The caller must have checked the binding is active. Never rejects.
   */
  obtainDelegated(domain: string): Promise<ObtainOutcome> {
    return this.once(domain, async () => {
      try {
        const stored = await this.loadStored(domain);
        if (stored) return { kind: 'ready', certificate: stored, source: 'storage' };
        const backoff = await this.failures.backoff(domain);
        if (backoff) return { kind: 'failed', reason: backoff };
        return await this.issueUnderLock(domain, 'registry (DCV delegation)', 'admin', { orderOptions: {} });
      } catch (err) {
        return await this.failed(domain, err, false);
      }
    });
  }

  /**
   * Why `domain` may not be ordered now (in backoff, or given up), or null. Shared through
   * storage: a failure on any instance counts. For the renewal scheduler, too.
   */
  backoff(domain: string): Promise<string | null> {
    return this.failures.backoff(domain);
  }

  /**
   * When `domain` may be ordered again after its failures (shared through storage): a time, null
   * once given up, undefined when it has no failures on record. The renewal scheduler files a
   * failed renewal at this time, so both follow one backoff.
   */
  async retryAt(domain: string): Promise<number | null | undefined> {
    return (await this.failures.state(domain))?.retryAt;
  }

  /**
   * The name `domain`'s certificate is stored, renewed and failing under: the first name of the
   * managed entry listing it (wildcards included), else `domain` itself. For the admin API.
   */
  certificateKey(domain: string): string {
    return this.deps.managed?.keyOf(domain) ?? domain;
  }

  /**
   * The name's failures since its last success as shared storage holds them (any instance's, and
   * kept across restarts), or null when there are none. For reporting (the admin API); a failure
   * storage could not take is reported from this process's memory.
   */
  failureRecord(domain: string): Promise<NameRetryState | null> {
    return this.failures.report(domain);
  }

  /**
   * The certificate stored for `domain`, under whichever configured issuer's CA holds it (the one
   * handshakes are served from), with its metadata; null when there is none. For the admin API.
   */
  async storedCertificate(domain: string): Promise<StoredCertificate | null> {
    return findCertificate(this.deps.storage, this.cas, domain);
  }

  /**
   * The bundle storage would serve for `domain` now (expired or not), without caching it; null
   * when none. One read, no retries: for re-checking the memory cache (tls/cache-sync.ts).
   */
  readStored(domain: string): Promise<CertificateBundle | null> {
    return loadCertificate(this.deps.storage, this.cas, domain);
  }

  /**
   * Loads a usable stored certificate for `domain` into the memory cache and returns it; null
   * when none is stored, it expired, or it does not name every one of `names` (when given). A
   * certificate found goes into the stored-names filter. Storage errors are retried, then reject.
   */
  async loadStored(domain: string, names?: readonly string[]): Promise<CachedCertificate | null> {
    const started = performance.now();
    const bundle = await this.retryStorage(domain, 'storage-load', () => loadCertificate(this.deps.storage, this.cas, domain));
    if (!bundle || !isUsable(bundle) || (names && !certificateCovers(bundle.certPem, names))) return null;
    const entry = this.deps.cache.add(bundle);
    // Whoever wrote it (a writer this process had not heard of, too), the filter knows it now.
    this.deps.storedNames?.add(domain);
    this.deps.onStorageLoad?.(bundle);
    this.deps.logger.debug({ domain, step: 'storage-load', ca: bundle.ca, ms: Math.round(performance.now() - started) }, 'certificate loaded from storage');
    return entry;
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
   * and (through onCacheInvalidation) every other process's cache.
   */
  async delete(domain: string, reason: string): Promise<void> {
    const { storage, cache } = this.deps;
    for (const ca of this.cas) await this.retryStorage(domain, 'delete', () => deleteCertificate(storage, ca, domain));
    await this.retryStorage(domain, 'delete', () => this.failures.clear(domain));
    cache.delete(domain);
    this.gates.forget(domain);
    this.invalidate({ domain, event: 'deleted' });
    this.events.emit({ type: 'deleted', domain, reason });
    this.deps.logger.info({ domain, step: 'delete', reason }, 'certificate deleted');
  }

  /**
   * Forget this process's remembered "denied" and failure backoff for a name, so the next
   * handshake asks policy again (the domain registry calls this when a binding changes).
   */
  forgetDecision(domain: string): void {
    this.gates.forget(domain);
    this.failures.forget(domain);
  }

  /**
   * How an on-demand attempt for `domain` from `clientIp` would end, as far as is known now
   * without waiting, as steps 1-4 would decide it (for refusing a connection before its TLS
   * handshake, tls/early-refusal.ts; the memory cache is the caller's to check first):
   * `refused` a remembered denial (step 2); `unless-stored` certainly not in the stored-names
   * filter and the client over its abuse limits (a refusal is counted and logged; an admission
   * takes no token), so refused unless a writer this process has not heard of stored it (the
   * caller then reads storage: loadIfStored); undefined whenever unsure (an attempt running,
   * wildcard bindings to ask, maybe stored, within the limits).
   */
  refusalNow(domain: string, clientIp: string | undefined): 'refused' | 'unless-stored' | undefined {
    if (this.deps.wildcardFor || this.inflight.has(domain)) return undefined;
    if (this.gates.remembered(domain)) return 'refused';
    if (this.deps.storedNames?.mightBeStored(domain) !== false) return undefined;
    return clientIp !== undefined && this.deps.limits?.refuses(domain, clientIp) === true ? 'unless-stored' : undefined;
  }

  /**
   * Step 3 alone: the stored certificate for `domain` into the memory cache (and the filter),
   * true when there is a usable one. For `unless-stored` above; storage errors reject.
   */
  async loadIfStored(domain: string): Promise<boolean> {
    return (await this.loadStored(domain)) !== null;
  }

  /** Step 1: one attempt per name; the entry is dropped when the attempt settles. */
  private once(domain: string, work: () => Promise<ObtainOutcome>): Promise<ObtainOutcome> {
    let attempt = this.inflight.get(domain);
    if (!attempt) {
      attempt = work().finally(() => this.inflight.delete(domain));
      this.inflight.set(domain, attempt);
    }
    return attempt;
  }

  /** Steps 2-6 of an on-demand attempt. */
  private async attempt(domain: string, request?: ObtainRequest): Promise<ObtainOutcome> {
    const wildcard = await this.wildcardCertificate(domain);
    if (wildcard) return { kind: 'ready', certificate: wildcard, source: 'storage' };
    const denied = this.gates.remembered(domain);
    if (denied) return denied;
    try {
      const skipped = this.deps.storedNames?.mightBeStored(domain) === false;
      const stored = skipped ? null : await this.loadStored(domain);
      if (stored) return { kind: 'ready', certificate: stored, source: 'storage' };
      const verdict = await this.gates.pass(domain, request);
      if (verdict.kind === 'denied' && skipped) return this.storedAfterDenial(domain, verdict);
      if (verdict.kind !== 'approved') return verdict;
      return await this.issueUnderLock(domain, verdict.approvedBy, 'on-demand', { orderOptions: { clientIp: request?.clientIp } });
    } catch (err) {
      return await this.failed(domain, err, false);
    }
  }

  /**
   * Step 3 after all for a name policy denied whose storage read the filter skipped: one stored
   * by a writer not heard of (e.g. `certgate import` into file storage) is served, as before the
   * filter, and its remembered denial dropped: a stored certificate is served whatever the
   * policy or the client's abuse limits say now (a client over its limits, e.g. many users
   * behind one address, still gets the names another instance on shared file storage issued).
   * The read comes after the gates, so a flood's names cost it only once they are refused.
   */
  private async storedAfterDenial(domain: string, denial: Refusal): Promise<ObtainOutcome> {
    const stored = await this.loadStored(domain);
    if (!stored) return denial;
    this.gates.forget(domain);
    return { kind: 'ready', certificate: stored, source: 'storage' };
  }

  /** The stored certificate of the active wildcard binding covering `domain`, loaded into memory; null when none. */
  private async wildcardCertificate(domain: string): Promise<CachedCertificate | null> {
    if (!this.deps.wildcardFor) return null;
    try {
      const key = await this.deps.wildcardFor(domain);
      return key === undefined ? null : await this.loadStored(key);
    } catch (err) {
      this.deps.logger.warn({ domain, step: 'wildcard-binding', err }, 'could not look up a wildcard binding; on-demand logic decides');
      return null;
    }
  }

  /**
   * Step 5: the order under the name's lock. Without `replacing`, a certificate found in storage
   * wins (another process just issued it); with `replacing` (a renewal), only one other than the
   * one being replaced; with `names` (a managed certificate), only one naming all of them.
   */
  private issueUnderLock(
    domain: string,
    approvedBy: string,
    reason: IssuanceReason,
    { replacing, orderOptions, names }: { replacing?: string; orderOptions: OrderOptions; names?: readonly string[] },
  ): Promise<ObtainOutcome> {
    const { storage, logger } = this.deps;
    const priority = { 'on-demand': IssuancePriority.onDemand, admin: IssuancePriority.admin, managed: IssuancePriority.admin, renewal: IssuancePriority.renewal }[reason];
    const started = performance.now();
    const lockOptions = { storage, logger, queue: this.queue, retryStorage: this.retryStorage, acme: this.config.acme };
    return underIssueLock<ObtainOutcome>(lockOptions, domain, priority, {
      storedWins: async () => {
        const stored = await this.loadStored(domain, names);
        return stored && (replacing === undefined || stored.fingerprint256 !== replacing) ? { kind: 'ready', certificate: stored, source: 'storage' } : null;
      },
      work: async (release) => {
        logger.info({ domain, step: 'issue-start', approvedBy, reason, waitedMs: Math.round(performance.now() - started) }, 'issuing certificate');
        return this.issueHolding(domain, { reason, renewal: replacing !== undefined, orderOptions, started, release });
      },
    });
  }

  /**
   * Steps 6-7, with the CA slot and the name's lock held: the order; stores and announces the
   * result. The slot is given back (`release`, idempotent) once the certificate is stored.
   */
  private async issueHolding(
    domain: string,
    { reason, renewal, orderOptions, started, release }: { reason: IssuanceReason; renewal: boolean; orderOptions: OrderOptions; started: number; release: () => void },
  ): Promise<ObtainOutcome> {
    const { storage, logger } = this.deps;
    const solvers = orderOptions.solvers ?? (await this.deps.solversFor?.(domain));
    const issued = await this.failover.issue(domain, reason, solvers ? { ...orderOptions, solvers } : orderOptions);
    const { from, replaced: _replaced, ...certificate } = issued;
    const bundle = await this.retryStorage(domain, 'store', () => saveCertificate(storage, { domain, ca: from.ca, directory: from.directory, ...certificate }), 300_000);
    release();
    this.deps.storedNames?.add(domain);
    const entry = this.deps.cache.add(bundle);
    await this.failures.clear(domain).catch((err: unknown) => logger.warn({ domain, step: 'retry-state', err }, 'could not clear the retry state'));
    await this.deps.budgets?.recordIssued(from.ca, domain, { exempt: issued.replaced !== undefined }).catch((err: unknown) => logger.warn({ domain, step: 'budget', err }, 'could not count the certificate in the budgets'));
    // Certificates of other CAs for the name would shadow this one on load.
    for (const ca of this.cas) {
      if (ca !== from.ca) await deleteCertificate(storage, ca, domain).catch((err: unknown) => logger.warn({ domain, step: 'store', ca, err }, "could not remove the other CA's certificate"));
    }
    this.invalidate({ domain, event: 'updated', fingerprint256: bundle.fingerprint256 });
    const ms = Math.round(performance.now() - started);
    logger.info({ domain, step: 'issued', ca: from.ca, directory: from.directory, challenge: issued.challenge, notAfter: bundle.notAfter.toISOString(), ms }, 'certificate issued and stored');
    this.events.emit({ type: renewal ? 'renewed' : 'issuance-succeeded', domain, ca: from.ca, notAfter: bundle.notAfter.toISOString(), ms, challenge: issued.challenge });
    return { kind: 'ready', certificate: entry, source: 'issued' };
  }

  /** Logs a failed attempt and records it for backoff unless the name is not at fault. */
  private async failed(domain: string, err: unknown, renewal: boolean): Promise<ObtainOutcome> {
    const { logger } = this.deps;
    const reason = (err as Error).message;
    const step = stepOf(err, renewal ? 'renew' : 'obtain');
    if (err instanceof IssuanceSkipped) {
      // Budgets spent, CAs paused, queue full: the log line came from there; the name is not at
      // fault. A full queue is a flood: its own warning is sampled, so per name only at debug.
      logger[step === 'queue-full' ? 'debug' : 'info']({ domain, step, reason }, 'no order placed: fallback certificate');
      return { kind: 'failed', reason };
    }
    await this.failures.record(domain, err, step);
    const ca = (err instanceof IssuersFailed ? err.failedCas.at(-1) : undefined) ?? this.cas[0]!;
    logger.error({ domain, step, ca, err }, renewal ? 'could not renew certificate' : 'could not obtain certificate');
    this.events.emit({ type: 'issuance-failed', domain, ca, step, error: reason, renewal });
    return { kind: 'failed', reason };
  }

  /** Tells the cache-invalidation listeners; a failing listener is logged, never thrown. */
  private invalidate(change: CacheInvalidation): void {
    for (const listener of this.invalidationListeners) {
      try {
        listener(change);
      } catch (err) {
        this.deps.logger.warn({ domain: change.domain, step: 'announce', err }, 'could not announce certificate change');
      }
    }
  }
}
