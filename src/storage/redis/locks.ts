// Locks on Redis: SET key value NX PX ttl; refresh = Lua compare-value-then-PEXPIRE; release = Lua
// compare-value-then-DEL-and-PUBLISH (scripts.ts: a stale holder never deletes a newer holder's
// lock, and the notification goes out atomically with the delete). The key is
// `<prefix>locks/<name>.lock`, its value JSON {token,pid,hostname,name,acquiredAt}.
//
// lock() waits without a tight polling loop: after a failed attempt it subscribes to the lock's
// channel, tries again (a release between the first attempt and the subscription is not
// missed), then sleeps until a release notification, the end of the holder's lease (PTTL: a
// holder that died is replaced as soon as its key expires), or a slow poll (pollMs, default
// 1 s, ±20 %), which covers a missed notification. Leases depend on Redis' clock only (PX), not
// on the hosts' clocks. A holder that stalls for longer than ttlMs loses the lock and learns it
// on its next refresh(). If the SET NX reply is lost (connection dropped after Redis executed
// it), the lock may be held by nobody who knows it until it expires.
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';

import type { Logger } from '../../util/log.ts';
import { LOCK_SUFFIX, LOCKS_DIR, lockNameParts } from '../keys.ts';
import { HeldLock, resolveLockOptions, StorageError, type Lock, type LockOptions } from '../storage.ts';
import type { RedisSubscriptions } from './bus.ts';
import { errorMessage } from './connection.ts';
import type { Driver, RunCommand } from './drivers.ts';
import { evalScript, REFRESH, RELEASE } from './scripts.ts';

/** Fallback poll while waiting for a lock; release notifications normally wake waiters first. */
const DEFAULT_LOCK_POLL_MS = 1_000;
/** A waiter tries again this long after the holder's lease should have run out (PTTL rounding). */
const LEASE_END_MARGIN_MS = 5;
const RELEASED = 'released';

interface LockTarget {
  name: string;
  /** The Redis key, also the channel its release notifications are published on. */
  key: string;
}

/** A one-shot "something happened" flag a waiter can sleep on with a time limit. */
class Waker {
  #pending = false;
  #wake: (() => void) | undefined;

  wake(): void {
    this.#pending = true;
    this.#wake?.();
  }

  reset(): void {
    this.#pending = false;
  }

  wait(ms: number): Promise<void> {
    if (this.#pending) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#wake = done;
    });
  }
}

/** What RedisLocks uses of RedisStorage. */
export interface RedisLockDeps {
  /** The storage's key prefix (with its hash tag in cluster mode). */
  prefix: string;
  /** The storage's driver (commands go through `run`). */
  driver: Driver;
  /** RedisStorage's command runner: time limit, fail-fast while down, StorageErrors. */
  run: RunCommand;
  /** Where lock() listens for release notifications. */
  subscriptions: RedisSubscriptions;
  /** For the debug line when release notifications cannot be subscribed (lock() then polls). */
  logger: Logger;
}

/**
 * The Storage lock methods of the Redis backend (see above). Callers should check the work still
 * needs doing after acquiring a lock: the previous holder may have done it while they waited.
 */
export class RedisLocks {
  /** Lock waiters, woken by wakeAll() (on close) so they fail at once instead of after their poll. */
  readonly #waiters = new Set<Waker>();

  /** Nothing is sent to Redis before the first tryLock/lock. */
  constructor(private readonly deps: RedisLockDeps) {}

  /** Wakes every waiting lock() so it tries again now (and fails at once if the storage is closed). */
  wakeAll(): void {
    for (const waker of this.#waiters) waker.wake();
  }

  /** Storage.tryLock: one SET NX PX; the lock, or null when someone holds it. */
  async tryLock(name: string, opts: LockOptions): Promise<Lock | null> {
    const { ttlMs } = resolveLockOptions(name, opts, DEFAULT_LOCK_POLL_MS);
    return this.acquire(this.lockTarget(name), ttlMs);
  }

  /** Storage.lock: waits for release notifications, the holder's lease end or the slow poll (see above); throws after waitMs. */
  async lock(name: string, opts: LockOptions): Promise<Lock> {
    const { ttlMs, waitMs, pollMs } = resolveLockOptions(name, opts, DEFAULT_LOCK_POLL_MS);
    const target = this.lockTarget(name);
    const deadline = Date.now() + waitMs;
    const first = await this.acquire(target, ttlMs);
    if (first) return first;

    const waker = new Waker();
    const unsubscribe = await this.deps.subscriptions.subscribe(target.key, () => waker.wake(), 'lock', name).catch((err: unknown) => {
      // Without notifications the slow poll still gets the lock, just later.
      this.deps.logger.debug({ lock: name, err: errorMessage(err) }, 'redis lock: cannot subscribe to release notifications; polling');
      return undefined;
    });
    this.#waiters.add(waker);
    try {
      for (;;) {
        waker.reset();
        const lock = await this.acquire(target, ttlMs);
        if (lock) return lock;
        const remaining = deadline - Date.now();
        if (remaining <= 0) {
          throw new StorageError(
            `timed out after ${waitMs} ms waiting for lock ${JSON.stringify(name)}: it is ${await this.describeHolder(target)}`,
            name,
            'lock',
          );
        }
        // Wake when the holder's lease runs out, not up to a poll later: a dead holder's name is
        // taken over as soon as its lock expires.
        const expiresIn = await this.expiresIn(target);
        const poll = pollMs * (0.8 + Math.random() * 0.4);
        await waker.wait(Math.min(remaining, expiresIn === undefined ? poll : Math.min(poll, expiresIn + LEASE_END_MARGIN_MS)));
      }
    } finally {
      this.#waiters.delete(waker);
      await unsubscribe?.();
    }
  }

  private lockTarget(name: string): LockTarget {
    lockNameParts(name);
    return { name, key: `${this.deps.prefix}${LOCKS_DIR}/${name}${LOCK_SUFFIX}` };
  }

  private async acquire(target: LockTarget, ttlMs: number): Promise<HeldLock | null> {
    const value = JSON.stringify({
      token: randomBytes(16).toString('hex'),
      pid: process.pid,
      hostname: hostname(),
      name: target.name,
      acquiredAt: Date.now(),
    });
    const reply = await this.deps.run('lock', target.name, () =>
      this.deps.driver.send(['SET', target.key, value, 'NX', 'PX', String(ttlMs)], target.key, false),
    );
    if (reply !== 'OK') return null;
    return new HeldLock(
      target.name,
      () => this.refreshLock(target, value, ttlMs),
      () => this.releaseLock(target, value),
    );
  }

  private async refreshLock(target: LockTarget, value: string, ttlMs: number): Promise<void> {
    const reply = await this.deps.run('refresh', target.name, () => evalScript(this.deps.driver, REFRESH, [target.key], [value, String(ttlMs)]));
    if (reply !== 1) {
      throw new StorageError(
        `lock lost: ${JSON.stringify(target.name)} expired or was taken over, now ${await this.describeHolder(target)}`,
        target.name,
        'refresh',
      );
    }
  }

  private async releaseLock(target: LockTarget, value: string): Promise<void> {
    // Not ours any more (expired, maybe taken over): nothing to do, and no notification.
    await this.deps.run('release', target.name, () => evalScript(this.deps.driver, RELEASE, [target.key], [value, target.key, RELEASED]));
  }

  /** Milliseconds until the lock's lease runs out by Redis' clock (0: gone), or undefined if unknown. */
  private async expiresIn(target: LockTarget): Promise<number | undefined> {
    try {
      const pttl = Number(await this.deps.run('lock', target.name, () => this.deps.driver.send(['PTTL', target.key], target.key, false)));
      if (pttl === -2) return 0;
      return pttl >= 0 ? pttl : undefined;
    } catch {
      return undefined; // the poll still gets there
    }
  }

  /** For error messages: who holds the lock now (best effort). */
  private async describeHolder(target: LockTarget): Promise<string> {
    try {
      const [raw, pttl] = await this.deps.run('lock', target.name, () =>
        Promise.all([this.deps.driver.send(['GET', target.key], target.key, false), this.deps.driver.send(['PTTL', target.key], target.key, false)]),
      );
      if (raw === null || raw === undefined) return 'not held (it was just released)';
      let who = 'an unparseable lock value';
      try {
        const r = JSON.parse(String(raw)) as Record<string, unknown>;
        const token = typeof r.token === 'string' ? r.token.slice(0, 8) : '?';
        who = `pid ${String(r.pid)} on ${String(r.hostname)}, token ${token}…`;
      } catch {
        // keep the generic description
      }
      const ttl = Number(pttl);
      return `held by ${who} (${ttl >= 0 ? `expires in ${ttl} ms` : 'no expiry'})`;
    } catch (err) {
      return `held (holder unknown: ${errorMessage(err)})`;
    }
  }
}
