// One issuance per name across processes and instances: a storage lock, taken only once the name
// has a slot in the ACME work queue, so no waiter holds a lock.
//   1. a slot in the ACME work queue, holding no lock while it waits (on-demand waiters are
//      bounded: over onDemand.limits.maxQueuedIssuances the name gets the fallback, no order);
//   2. the name's lock, taken only with the slot; when another process holds it, the slot is
//      given back while we wait for that lock, then we go back to step 1 unless step 3 ends it;
//   3. storage again: what another process stored meanwhile may end it (the caller decides);
//   4. the work, with the lock refreshed throughout (keepLockAlive) and both released after.
import type { Logger } from '../util/log.ts';
import type { AcmeConfig } from '../config/schema.ts';
import { keys } from '../storage/keys.ts';
import { keepLockAlive, type Lock, type Storage } from '../storage/storage.ts';
import type { IssuanceQueue } from './queue.ts';
import type { RetryStorage } from './store.ts';

/** What the lock steps need: where the lock lives, the work queue, and the `acme` timings as parsed. */
export interface IssueLockOptions {
  storage: Storage;
  queue: IssuanceQueue;
  retryStorage: RetryStorage;
  logger: Logger;
  /**
   * `lockTtl`: the lock's expiry (how soon another instance takes over a name whose issuing
   * process died); refreshed five times per expiry while the work runs, so a slow CA never makes
   * the holder lose it. `timeout`: one whole order; another process's lock is waited for at
   * most twice that, then the wait rejects.
   */
  acme: Pick<AcmeConfig, 'lockTtl' | 'timeout'>;
}

/** The two halves of one locked issuance, as the caller sees them. */
export interface LockedWork<T> {
  /** Step 3: what storage holds now ends the attempt when this returns non-null. */
  storedWins: () => Promise<T | null>;
  /** Step 4: the work, given the slot's idempotent release so it can free the slot early. */
  work: (release: () => void) => Promise<T>;
}

/**
 * Runs `work` for `domain` under the name's lock with a CA slot of `priority` (steps 1-4 of the
 * header), unless `storedWins` finds the work done by another process first. Rejects with
 * IssuanceSkipped when the on-demand queue is full, and with storage errors once retries end.
 */
export async function underIssueLock<T>(opts: IssueLockOptions, domain: string, priority: number, { storedWins, work }: LockedWork<T>): Promise<T> {
  const { storage, queue, retryStorage, logger } = opts;
  const ttlMs = opts.acme.lockTtl;
  const releaseLock = (lock: Lock): Promise<void> => lock.release().catch((err: unknown) => logger.warn({ domain, step: 'lock-release', err }, 'issuance lock release failed'));
  for (;;) {
    // 1. A CA slot, no lock held while waiting for it.
    const release = await queue.slot(domain, priority);
    // 2. The lock, only with the slot.
    let lock: Lock | null;
    try {
      lock = await retryStorage(domain, 'lock', () => storage.tryLock(keys.issueLock(domain), { ttlMs }));
    } catch (err) {
      release();
      throw err;
    }
    if (!lock) {
      // Another process is issuing the name: wait for it without holding one of our slots.
      release();
      const waited = await retryStorage(domain, 'lock', () => storage.lock(keys.issueLock(domain), { ttlMs, waitMs: opts.acme.timeout * 2 }));
      try {
        const stored = await storedWins();
        if (stored) return stored;
      } finally {
        await releaseLock(waited);
      }
      continue; // it died or failed: queue for a slot of our own
    }
    const stopKeepAlive = keepLockAlive(lock, ttlMs, (err) => logger.warn({ domain, step: 'lock-refresh', err }, 'issuance lock refresh failed'));
    try {
      // 3. Another process may have finished while we waited for the slot.
      const stored = await storedWins();
      if (stored) return stored;
      // 4. The work.
      return await work(release);
    } finally {
      release();
      stopKeepAlive();
      await releaseLock(lock);
    }
  }
}
