// The maintainer: on instances with role `all` or `maintainer`, takes part in the leader
// election; the leader indexes certificates stored before the index existed (once), then every
// `checkInterval` runs the renewal scheduler, the cleanup and the tasks added by the parts above
// (addTask: the webhooks' certificate-expiring scan; `tasks`: the ownership re-check of pending
// bindings). Any instance that is not an edge
// also renews a certificate a handshake finds inside its renewal time (in the background).
import type { DnsProvider } from '../acme/dns/provider.ts';
import type { CertificateIssuer } from '../acme/issuers.ts';
import type { Config } from '../config/schema.ts';
import type { Logger } from '../util/log.ts';
import type { CertificateBundle, CertificateMeta } from '../issuance/store.ts';
import { keys } from '../storage/keys.ts';
import type { Storage } from '../storage/storage.ts';
import { Cleanup } from './cleanup.ts';
import { LeaderElection } from './leader.ts';
import { HOUR_MS, hourBucket, indexCertificate } from '../issuance/renewal-index.ts';
import { RenewalScheduler, type RenewalSchedulerOptions } from './scheduler.ts';

/** `renewal` as the schema outputs it (durations in ms): fraction, concurrency, checkInterval, jitter, leaderLockTtl, expiredGrace, staleChallengeAge. */
export type MaintainerConfig = Config['renewal'];

/** What the maintainer works with besides `renewal`. */
export interface MaintainerDeps {
  storage: Storage;
  manager: RenewalSchedulerOptions['manager'];
  policy: RenewalSchedulerOptions['policy'];
  /** Whether a name is a managed certificate's first name: renewed without asking the policy. */
  isManaged?: (domain: string) => boolean;
  /**
   * The configured (production) issuers. ARI windows are asked of the one whose directory issued
   * the certificate; a certificate from a CA no longer configured falls back to the lifetime fraction.
   */
  issuers: readonly CertificateIssuer[];
  /** `acme.profile`: asked for in renewal orders. */
  profile?: string;
  /** The dns-01 provider: the cleanup removes records a dead process left through it. */
  dnsProvider?: DnsProvider;
  logger: Logger;
  now?: () => number;
  /** More work for the leader's every pass, after renewal and cleanup; a failing task is logged (its `step`), the others still run. */
  tasks?: ReadonlyArray<{ step: string; run: () => Promise<void> }>;
}

/**
 * The maintainer of the header: start() joins the leader election, stop() leaves it and waits
 * for running work; onCertificateLoaded() is for the manager's onStorageLoad.
 */
export class Maintainer {
  readonly scheduler: RenewalScheduler;
  readonly cleanup: Cleanup;
  private readonly leader: LeaderElection;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private backfilled = false;
  private readonly tasks: Array<{ step: string; run: () => Promise<void> }> = [];

  constructor(
    private readonly config: MaintainerConfig,
    private readonly opts: MaintainerDeps,
  ) {
    const { storage, logger } = opts;
    this.scheduler = new RenewalScheduler({
      storage,
      manager: opts.manager,
      policy: opts.policy,
      ...(opts.isManaged ? { isManaged: opts.isManaged } : {}),
      issuerOf: (directory) => opts.issuers.find((issuer) => issuer.directory === directory),
      ...(opts.profile ? { profile: opts.profile } : {}),
      fraction: config.fraction,
      jitterMs: config.jitter,
      concurrency: config.concurrency,
      logger,
      ...(opts.now ? { now: opts.now } : {}),
    });
    this.cleanup = new Cleanup({
      storage,
      deleteCertificate: (domain, reason) => opts.manager.delete(domain, reason),
      expiredGraceMs: config.expiredGrace,
      staleChallengeAgeMs: config.staleChallengeAge,
      ...(opts.dnsProvider ? { dnsProvider: opts.dnsProvider } : {}),
      logger,
      ...(opts.now ? { now: opts.now } : {}),
    });
    this.leader = new LeaderElection({
      storage,
      lockName: keys.maintainerLock,
      ttlMs: config.leaderLockTtl,
      logger,
      onElected: () => this.startLoop(),
      onDemoted: () => this.stopLoop(),
    });
  }

  get isLeader(): boolean {
    return this.leader.isLeader;
  }

  start(): void {
    this.leader.start();
  }

  async stop(): Promise<void> {
    this.stopLoop();
    await this.leader.stop();
    await this.running?.catch(() => undefined);
    await this.scheduler.idle();
  }

  /** Hook for CertificateManager: a certificate was loaded from storage for a handshake. */
  onCertificateLoaded(bundle: CertificateBundle): void {
    this.scheduler.renewIfDue(bundle);
  }

  /**
   * Runs `run` in every maintenance pass of the leader, after the cleanup. A failure is logged
   * with `step` and does not stop the pass nor the next task.
   */
  addTask(step: string, run: () => Promise<void>): void {
    this.tasks.push({ step, run });
  }

  /** One maintenance pass now (the loop calls this every checkInterval while leader). */
  runOnce(): Promise<void> {
    this.running ??= (async () => {
      try {
        if (!this.backfilled) await this.backfill();
        await this.scheduler.tick();
        await this.cleanup.sweep();
        for (const task of this.opts.tasks ?? []) {
          await task.run().catch((err: unknown) => this.opts.logger.error({ step: task.step, err }, 'maintenance task failed'));
        }
      } catch (err) {
        this.opts.logger.error({ step: 'maintain', err }, 'maintenance pass failed');
      }
      for (const task of this.tasks) {
        await task.run().catch((err: unknown) => this.opts.logger.error({ step: task.step, err }, 'maintenance task failed'));
      }
    })().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private startLoop(): void {
    if (this.timer) return;
    void this.runOnce();
    this.timer = setInterval(() => void this.runOnce(), this.config.checkInterval);
    this.timer.unref();
  }

  private stopLoop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /**
   * Certificates stored before the index existed: indexed once, by one leader, guarded by a
   * marker key. This is the only full listing of certificates, and it runs once per storage.
   */
  private async backfill(): Promise<void> {
    const { storage, logger } = this.opts;
    if (await storage.get(keys.indexBackfilled)) {
      this.backfilled = true;
      return;
    }
    const started = performance.now();
    const metas = (await storage.list('certificates/')).filter((k) => k.endsWith('/meta.json'));
    let indexed = 0;
    let oldestExpiry = Infinity;
    for (const key of metas) {
      try {
        const raw = await storage.get(key);
        if (!raw) continue;
        const meta = JSON.parse(raw.toString('utf8')) as CertificateMeta;
        if (!(await storage.get(key.replace(/meta\.json$/, 'cert.pem')))) continue;
        await indexCertificate(storage, meta, this.now());
        oldestExpiry = Math.min(oldestExpiry, Date.parse(meta.notAfter));
        indexed++;
      } catch (err) {
        logger.warn({ step: 'index-backfill', key, err }, 'could not index stored certificate');
      }
    }
    // Cleanup must start from the oldest expiry found, not from "a day ago".
    if (Number.isFinite(oldestExpiry)) {
      await storage.put(keys.expiryCursor, hourBucket(Math.min(oldestExpiry, this.now()) - HOUR_MS));
    }
    await storage.put(keys.indexBackfilled, JSON.stringify({ at: new Date().toISOString(), indexed }));
    this.backfilled = true;
    logger.info({ step: 'index-backfill', indexed, ms: Math.round(performance.now() - started) }, 'stored certificates indexed for renewal');
  }

  private now(): number {
    return (this.opts.now ?? Date.now)();
  }
}
