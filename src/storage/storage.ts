// The storage interface every backend implements (file/ and redis/ below this folder). Keys are
// '/'-separated paths such as `certificates/<ca>/<domain>/cert.pem`; backends map them to
// their own layout but must keep them readable by a human.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../util/log.ts';

/** Options of Storage.put. */
export interface PutOptions {
  /** Secret material (private keys, account keys): file mode 0600 or equivalent. */
  private?: boolean;
  /**
   * Default true: the value survives a crash once put() resolves (the file backend fsyncs the file
   * and its directory). false for values worthless after a crash (challenge tokens): other
   * processes still see them at once, but a crash may lose them; saves the fsyncs.
   */
  durable?: boolean;
}

/** One value of Storage.putMany: the arguments of one put(). */
export interface PutEntry {
  /** The key, as for put(). */
  key: string;
  /** The value, as for put(). */
  value: Buffer | string;
  /** private/durable, as for put(). */
  opts?: PutOptions;
}

/** Options of Storage.list: one page of the sorted keys. */
export interface ListOptions {
  /** Only keys sorting strictly after this one (a cursor: the last key of the previous page). */
  after?: string;
  /** At most this many keys (the first ones in sort order). */
  limit?: number;
}

/** Options of Storage.lock and Storage.tryLock: the lease and how long to wait for it. */
export interface LockOptions {
  /** A lock not refreshed within this time is considered abandoned and may be taken over. */
  ttlMs: number;
  /** How long lock() waits for a held lock before failing. Default: ttlMs * 2. */
  waitMs?: number;
  /** Poll interval while waiting. Default 100 ms. */
  pollMs?: number;
}

/**
 * A held lock: a lease that ends ttlMs after it was taken or last refreshed. Keep it with
 * keepLockAlive while working (a holder that stalls past ttlMs loses it to a waiter and learns
 * so only on its next refresh()), and release it when done.
 */
export interface Lock {
  /** The name it was taken under. */
  readonly name: string;
  /** Extends the expiry by ttlMs from now; fails if the lock was lost (taken over). */
  refresh(): Promise<void>;
  /** Releases the lock if this holder still owns it. Safe to call twice. */
  release(): Promise<void>;
}

/**
 * What every backend (file, Redis) implements: keyed values plus cross-process locks. Keys are
 * '/'-separated paths (keys.ts says which, and the rules every backend applies). A value is
 * replaced whole, never partially visible. Operations fail with StorageError, which names the
 * key and the step; the Redis backend fails at once while Redis is unreachable.
 */
export interface Storage {
  /** A human-readable description, e.g. `file:/var/lib/certgate`. */
  readonly description: string;
  /** The value, or null when there is none. */
  get(key: string): Promise<Buffer | null>;
  /** Atomic: readers see the old value or the new one, never a partial write. */
  put(key: string, value: Buffer | string, opts?: PutOptions): Promise<void>;
  /**
   * Optional: several put()s, made visible strictly in the given order, so a reader or a crashed
   * writer that finds one value finds every value before it (a key before its chain); cheaper
   * than one put() after another (the file backend fsyncs each directory once). Every key is
   * checked before anything is written. Call it through putInOrder(), which falls back to
   * put() one after another for a Storage without it.
   */
  putMany?(entries: readonly PutEntry[]): Promise<void>;
  /** Deleting a missing key is not an error. */
  delete(key: string): Promise<void>;
  /**
   * Every key below `prefix` (recursively), sorted. `prefix` is a key path, e.g. `certificates/`.
   * With `after`/`limit`, one page: the first `limit` keys sorting after `after` (paging by
   * passing the last key of a page as the next `after`). Pages of ASCII keys come in the same
   * order on every backend.
   */
  list(prefix: string, opts?: ListOptions): Promise<string[]>;
  /**
   * Waits until the named lock is acquired (or throws StorageError 'lock' after waitMs). Works
   * across processes and hosts on the same storage. Callers should check the work still needs
   * doing after acquiring the lock: the holder they waited for may have just done it (e.g.
   * reload the certificate from storage before ordering one).
   */
  lock(name: string, opts: LockOptions): Promise<Lock>;
  /** Acquires the lock now or returns null. As for lock(): check the work is still needed once held. */
  tryLock(name: string, opts: LockOptions): Promise<Lock | null>;
  /** Closes connections; held locks stay held until released or expired. Further calls fail. */
  close(): Promise<void>;
}

/**
 * Puts `entries` so they become visible in their order (see Storage.putMany): with the backend's
 * putMany when it has one, else one put() after another.
 */
export async function putInOrder(storage: Pick<Storage, 'put' | 'putMany'>, entries: readonly PutEntry[]): Promise<void> {
  if (storage.putMany) return storage.putMany(entries);
  for (const { key, value, opts } of entries) await storage.put(key, value, opts);
}

/**
 * Every storage failure: `key` is the storage key (or lock name, list prefix, '' for the whole
 * storage) and `step` what failed ('read', 'write', 'lock', 'refresh', 'connect', ...).
 * 'validate-key' means the key itself is refused: retrying cannot help.
 */
export class StorageError extends Error {
  constructor(
    message: string,
    readonly key: string,
    readonly step: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'StorageError';
  }
}

/** How long and how often retryStorageErrors tries again. */
export interface StorageRetry {
  /** Time allowed for every attempt together; the last StorageError is thrown after it. */
  budgetMs: number;
  /** The first wait, doubled after each failed attempt up to maxDelayMs. */
  initialDelayMs: number;
  /** The longest wait between two attempts. */
  maxDelayMs: number;
}

/** The one warning a retried operation logs, before its first wait (with `err` and `retryInMs` added). */
export interface StorageRetryNotice {
  /** Where the warning goes. */
  logger: Pick<Logger, 'warn'>;
  /** Fields of the log line (the domain, the step, ...). */
  fields: Record<string, unknown>;
  /** The message of the log line. */
  message: string;
}

/**
 * Runs `op`, trying again after a StorageError with doubling waits until it succeeds or
 * `budgetMs` is spent (one last attempt lands at the deadline). The Redis backend fails commands
 * at once while it reconnects (no offline queue, so a handshake never hangs on it); a caller
 * that can afford to wait rides out a short outage with this instead of failing. Other errors,
 * and invalid keys (they stay invalid), are thrown at once. `notice` is logged once, at the
 * first retry, so an outage costs one line per operation.
 */
export async function retryStorageErrors<T>(op: () => Promise<T>, retry: StorageRetry, notice?: StorageRetryNotice): Promise<T> {
  const deadline = Date.now() + retry.budgetMs;
  let delay = retry.initialDelayMs;
  for (let attempt = 1; ; attempt++) {
    try {
      return await op();
    } catch (err) {
      const remaining = deadline - Date.now();
      if (!(err instanceof StorageError) || err.step === 'validate-key' || remaining <= 0) throw err;
      const wait = Math.min(delay, remaining);
      if (attempt === 1) notice?.logger.warn({ ...notice.fields, err: err.message, retryInMs: wait }, notice.message);
      await sleep(wait);
      delay = Math.min(delay * 2, retry.maxDelayMs);
    }
  }
}

/**
 * The StorageError behind `err`, if any: `err` itself or one of its causes (a solver's storage
 * write fails inside an ACME step, which wraps it with the domain and the step).
 */
export function storageErrorIn(err: unknown): StorageError | undefined {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    if (e instanceof StorageError) return e;
  }
  return undefined;
}

/**
 * A JSON value stored under `key`, or null when there is none or it does not parse (a torn or
 * foreign value is treated as absent, and overwritten or dropped by the caller).
 */
export async function getJson<T>(storage: Pick<Storage, 'get'>, key: string): Promise<T | null> {
  const raw = await storage.get(key);
  if (!raw) return null;
  try {
    return JSON.parse(raw.toString('utf8')) as T;
  } catch {
    return null;
  }
}

/**
 * Fills in LockOptions defaults (waitMs = 2 × ttl, pollMs = the backend's default) and rejects
 * values no backend can honour. ttlMs is rounded up to whole milliseconds.
 */
export function resolveLockOptions(name: string, opts: LockOptions, defaultPollMs: number): { ttlMs: number; waitMs: number; pollMs: number } {
  const ttlMs = Math.ceil(opts.ttlMs);
  const waitMs = opts.waitMs ?? ttlMs * 2;
  const pollMs = opts.pollMs ?? defaultPollMs;
  if (!(Number.isFinite(ttlMs) && ttlMs > 0) || !(Number.isFinite(waitMs) && waitMs >= 0) || !(Number.isFinite(pollMs) && pollMs > 0)) {
    throw new StorageError(`invalid lock options for ${JSON.stringify(name)}: ttlMs must be > 0, waitMs >= 0, pollMs > 0`, name, 'lock');
  }
  return { ttlMs, waitMs, pollMs };
}

/**
 * A held lock for any backend: the backend supplies refresh and release (which check that
 * this holder still owns the lock); this keeps release idempotent and refresh-after-release an error.
 */
export class HeldLock implements Lock {
  #released = false;
  #releasing: Promise<void> | undefined;

  constructor(
    readonly name: string,
    private readonly doRefresh: () => Promise<void>,
    private readonly doRelease: () => Promise<void>,
  ) {}

  async refresh(): Promise<void> {
    if (this.#released || this.#releasing !== undefined) {
      throw new StorageError(`lock ${JSON.stringify(this.name)} was released`, this.name, 'refresh');
    }
    await this.doRefresh();
  }

  /** Safe to call twice (or concurrently). */
  release(): Promise<void> {
    if (this.#released) return Promise.resolve();
    this.#releasing ??= this.doRelease().then(
      () => {
        this.#released = true;
      },
      (err: unknown) => {
        this.#releasing = undefined;
        throw err;
      },
    );
    return this.#releasing;
  }
}

/** A held lock is refreshed this many times per ttlMs by keepLockAlive. */
export const LOCK_REFRESHES_PER_TTL = 5;

/**
 * Refreshes `lock` every ttlMs / LOCK_REFRESHES_PER_TTL until the returned function is called.
 * Refreshing five times per lease (not once, just before it ends) is what lets a short lease
 * (quick take-over from a dead holder) survive a live holder's bad moments: the lease only runs
 * out after four refreshes in a row failed, or an event-loop stall of about 4/5 of ttlMs. A
 * failure is reported to `onError` and tried again at the next tick; a refresh still running
 * when the next tick comes is not doubled.
 */
export function keepLockAlive(lock: Lock, ttlMs: number, onError: (err: unknown) => void): () => void {
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    lock
      .refresh()
      .catch(onError)
      .finally(() => {
        running = false;
      });
  }, ttlMs / LOCK_REFRESHES_PER_TTL);
  timer.unref();
  return () => clearInterval(timer);
}

/** Applies ListOptions to a sorted key list (for backends that cannot page natively). */
export function pageOf(sorted: string[], opts: ListOptions | undefined): string[] {
  if (!opts) return sorted;
  assertValidListOptions(opts);
  let start = 0;
  if (opts.after !== undefined) {
    // Binary search: the first key > after.
    let lo = 0;
    let hi = sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (sorted[mid]! <= opts.after) lo = mid + 1;
      else hi = mid;
    }
    start = lo;
  }
  return sorted.slice(start, opts.limit === undefined ? undefined : start + opts.limit);
}

/** Throws StorageError 'validate-key' unless `limit` is a whole number >= 0 and `after` a string. */
export function assertValidListOptions(opts: ListOptions): void {
  if (opts.limit !== undefined && !(Number.isInteger(opts.limit) && opts.limit >= 0)) {
    throw new StorageError(`invalid list limit ${String(opts.limit)}: a whole number >= 0`, String(opts.limit), 'validate-key');
  }
  if (opts.after !== undefined && typeof opts.after !== 'string') {
    throw new StorageError('invalid list cursor: a key string', String(opts.after), 'validate-key');
  }
}
