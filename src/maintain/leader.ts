// One leader among the maintainers on a storage, through a storage lock: the holder refreshes it
// every third of its expiry; the others try to take it at the same pace. A holder that dies
// (kill -9, lost machine) stops refreshing and another takes over within the lock expiry; a
// holder that cannot refresh (lost the lock, storage down) steps down at once.
import type { Logger } from '../util/log.ts';
import type { Lock, Storage } from '../storage/storage.ts';

/** The storage lock to hold (`lockName`, `ttlMs`) and what to call on winning and losing it. */
export interface LeaderElectionOptions {
  storage: Storage;
  lockName: string;
  ttlMs: number;
  logger: Logger;
  onElected: () => void;
  onDemoted: () => void;
}

/**
 * The election of the header: start() joins it, stop() steps down (releasing the lock). onElected
 * and onDemoted alternate, starting with onElected.
 */
export class LeaderElection {
  private lock: Lock | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private busy = false;

  constructor(private readonly opts: LeaderElectionOptions) {}

  get isLeader(): boolean {
    return this.lock !== undefined;
  }

  start(): void {
    this.stopped = false;
    void this.step();
    this.timer = setInterval(() => void this.step(), Math.max(50, this.opts.ttlMs / 3));
    this.timer.unref();
  }

  /** Stops trying; releases the lock when held so another maintainer takes over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    const lock = this.lock;
    if (lock) {
      this.demote('stopping');
      await lock.release().catch((err: unknown) => this.opts.logger.warn({ step: 'leader-release', err }, 'could not release the maintainer lock'));
    }
  }

  private async step(): Promise<void> {
    if (this.busy || this.stopped) return;
    this.busy = true;
    const { storage, lockName, ttlMs, logger } = this.opts;
    try {
      if (this.lock) {
        try {
          await this.lock.refresh();
        } catch (err) {
          this.lock = undefined;
          logger.warn({ step: 'leader-lost', err }, 'maintainer lock lost; no longer the leader');
          this.opts.onDemoted();
        }
        return;
      }
      const lock = await storage.tryLock(lockName, { ttlMs }).catch((err: unknown) => {
        logger.debug({ step: 'leader-elect', err }, 'maintainer lock attempt failed');
        return null;
      });
      if (!lock) return;
      if (this.stopped) {
        await lock.release().catch(() => undefined);
        return;
      }
      this.lock = lock;
      logger.info({ step: 'leader-elected', pid: process.pid }, 'this instance is the maintainer leader');
      this.opts.onElected();
    } finally {
      this.busy = false;
    }
  }

  private demote(reason: string): void {
    this.lock = undefined;
    this.opts.logger.info({ step: 'leader-stepped-down', reason }, 'maintainer leader stepped down');
    this.opts.onDemoted();
  }
}
