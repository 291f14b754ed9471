// Caps concurrent work (CA orders in flight) like a semaphore, but hands a free slot to the
// waiter with the highest priority first (arrival order within one priority), so a backlog of
// low-priority work (renewals) never delays high-priority work (a new customer's first request).
// IssuanceQueue puts it to the manager's use: on-demand waiters are bounded, renewals and admin
// work are not.
import type { LimitsConfig, OnDemandConfig } from '../config/schema.ts';
import type { Logger } from '../util/log.ts';
import { IssuanceSkipped } from './errors.ts';

/** Priorities of ACME work: higher goes first. */
export const IssuancePriority = {
  renewal: 0,
  admin: 1,
  onDemand: 2,
} as const;

interface Waiter {
  priority: number;
  seq: number;
  grant: () => void;
}

/**
 * A semaphore of `limit` slots handed out by priority (see the header). A release function is
 * idempotent; every acquired slot must be released exactly once or the queue shrinks.
 */
export class PriorityWorkQueue {
  private active = 0;
  private seq = 0;
  private readonly waiters: Waiter[] = [];

  constructor(readonly limit: number) {}

  /** Slots held right now. */
  get inUse(): number {
    return this.active;
  }

  /** Waiting for a slot, optionally only those of one priority. */
  waiting(priority?: number): number {
    return priority === undefined ? this.waiters.length : this.waiters.filter((w) => w.priority === priority).length;
  }

  /** Resolves with a release function once a slot is ours. */
  async acquire(priority: number): Promise<() => void> {
    if (this.active < this.limit && this.waiters.length === 0) {
      this.active++;
    } else {
      await new Promise<void>((grant) => this.enqueue({ priority, seq: this.seq++, grant }));
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiters.shift();
      if (next) next.grant(); // hand the slot over directly
      else this.active--;
    };
  }

  /**
   * Like acquire, but a bounded queue: resolves null at once, taking nothing, when the work would
   * have to wait while `maxWaiting` or more of its own priority already wait (0: never wait).
   * Other priorities do not count, so a renewal backlog never turns new customers away.
   */
  acquireWithin(priority: number, maxWaiting: number): Promise<(() => void) | null> {
    const mustWait = !(this.active < this.limit && this.waiters.length === 0);
    if (mustWait && this.waiting(priority) >= maxWaiting) return Promise.resolve(null);
    return this.acquire(priority);
  }

  /** Sorted insert: highest priority first, then arrival order. Queues are short (one entry per waiting issuance). */
  private enqueue(waiter: Waiter): void {
    let i = this.waiters.length;
    while (i > 0 && this.waiters[i - 1]!.priority < waiter.priority) i--;
    this.waiters.splice(i, 0, waiter);
  }
}

/** The `onDemand` settings the queue applies, as parsed. */
export type QueueConfig = Pick<OnDemandConfig, 'maxConcurrentIssuances'> & { limits: Pick<LimitsConfig, 'maxQueuedIssuances'> };

/**
 * The ACME work queue of one process: onDemand.maxConcurrentIssuances orders at once, at most
 * onDemand.limits.maxQueuedIssuances on-demand waiters.
 */
export class IssuanceQueue {
  private readonly queue: PriorityWorkQueue;
  private readonly maxQueued: number;
  /** The sampled "queue full" warning: when it was last logged, and names skipped since. */
  private fullLoggedAt = -Infinity;
  private fullSinceLastLine = 0;

  constructor(
    onDemand: QueueConfig,
    private readonly logger: Logger,
  ) {
    this.queue = new PriorityWorkQueue(onDemand.maxConcurrentIssuances);
    this.maxQueued = onDemand.limits.maxQueuedIssuances;
  }

  /** Orders running, and work waiting for a slot. */
  get state(): { running: number; waiting: number } {
    return { running: this.queue.inUse, waiting: this.queue.waiting() };
  }

  /**
   * A slot for `priority`; resolves to its (idempotent) release. On-demand work waits behind at
   * most `maxQueued` others; beyond that it rejects with IssuanceSkipped (step 'queue-full': the
   * fallback, no order, no backoff) and a warning says so, at most once per 10 s with a count.
   */
  async slot(domain: string, priority: number): Promise<() => void> {
    if (priority !== IssuancePriority.onDemand) return this.queue.acquire(priority);
    const release = await this.queue.acquireWithin(priority, this.maxQueued);
    if (release) return release;
    this.fullSinceLastLine++;
    const now = Date.now();
    if (now - this.fullLoggedAt >= 10_000) {
      this.logger.warn(
        { domain, step: 'queue-full', waiting: this.queue.waiting(priority), bound: this.maxQueued, rejectedSinceLastLine: this.fullSinceLastLine },
        'issuance queue full (onDemand.limits.maxQueuedIssuances): fallback certificate, no order',
      );
      this.fullLoggedAt = now;
      this.fullSinceLastLine = 0;
    }
    throw new IssuanceSkipped(`no order for ${domain}: ${this.maxQueued} on-demand issuances already wait for a CA slot (onDemand.limits.maxQueuedIssuances)`, 'queue-full');
  }
}
