// Caps concurrent work (CA orders in flight) like a semaphore, but hands a free slot to the
// waiter with the highest priority first (arrival order within one priority), so a backlog of
// low-priority work (renewals) never delays high-priority work (a new customer's first request).

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

export class PriorityWorkQueue {
  private active = 0;
  private seq = 0;
  private readonly waiters: Waiter[] = [];

  constructor(readonly limit: number) {}

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
