// File locks: small JSON files below `<root>/locks/` that work across processes (and across
// hosts sharing the directory, provided their clocks agree). The protocol, in full:
//
//
// Locks
//   Acquire: create `<name>.lock` with O_EXCL ('wx'). If it exists and its expiresAt has not
//   passed, the lock is held. If it has passed (holder died or hung), the lock is taken over.
//
//   Every change to an *existing* lock file (take-over, refresh, release) happens while holding
//   that lock's breaker, `.<name>.lock.break`, itself created with O_EXCL. Under the breaker the
//   lock file can only change by an O_EXCL create, and that only when the file is missing. So:
//   - take-over: with the breaker held, re-read the lock file; only if it is still the very
//     stale file judged before (same inode and same bytes) and still expired, unlink it, then
//     create our own with O_EXCL. Two waiters racing for the same stale lock are serialized by
//     the breaker; the second one re-reads and finds the fresh lock of the first.
//   - refresh: with the breaker held, check the token is ours, then atomically replace the file
//     (temp file + rename), so there is never an instant without a lock file.
//   - release: with the breaker held, check the token is ours, then unlink.
//   A breaker is only held for a few file operations. If its holder dies in between, the
//   breaker is considered abandoned after BREAKER_TTL_MS and broken by renaming it to a unique
//   `.stale` name, checking that the renamed file is the stale one that was read (inode and
//   bytes) and, if it is not, linking it back with link(2), which never overwrites.
//
//   Remaining races (documented, not handled):
//   1. Leases depend on time. A holder that stops (GC pause, SIGSTOP, swapped out) for longer
//      than ttlMs loses the lock to a waiter and only notices on its next refresh(); work done
//      in between is unprotected. Hosts sharing the directory need synchronized clocks.
//   2. A process that stalls for more than BREAKER_TTL_MS (5 s) *inside* a breaker critical
//      section (a few syscalls) may find its breaker broken and act concurrently with the next
//      breaker holder, which could leave two holders of the lock.
//   3. Breaking a stale breaker: if waiter A has already broken it and created a fresh one,
//      waiter B (who read the same stale breaker) renames A's fresh breaker away, sees the
//      inode differs, and links it back; if a third waiter C created a new breaker in that
//      window of microseconds, the link fails (EEXIST) and A and C both hold a breaker. This
//      needs a process to have died inside the breaker critical section first, i.e. race 2's
//      precondition plus a three-way race.
//   4. A lock file that cannot be parsed (its creator crashed between the create and the
//      write) is judged by its mtime plus the waiter's ttlMs.
//   5. Deleting lock files by hand (rm) bypasses all of this.
import { randomBytes } from 'node:crypto';
import { link, open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { hostname } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { LOCK_SUFFIX, LOCKS_DIR, lockNameParts } from '../keys.ts';
import { HeldLock, resolveLockOptions, StorageError, type Lock, type LockOptions } from '../storage.ts';
import { ENOENT_RETRIES, errno, fail, mkdirs, tempName, writeAtomic } from './atomic-write.ts';

/** How often a waiter re-checks a held lock file. */
const DEFAULT_LOCK_POLL_MS = 100;

const LOCK_FILE_MODE = 0o644;
const BREAKER_SUFFIX = '.lock.break';

/** A breaker older than this is considered abandoned (its holder died mid critical section). */
const BREAKER_TTL_MS = 5_000;

interface LockRecord {
  token: string;
  pid: number;
  hostname: string;
  /** Milliseconds since the epoch. */
  expiresAt: number;
  name: string;
  acquiredAt: number;
}

/** A lock (or breaker) file as read from disk. */
interface LockFileState {
  /** null when the content is not a valid record (creator crashed before writing it). */
  record: LockRecord | null;
  raw: string;
  dev: number;
  ino: number;
  mtimeMs: number;
}

interface LockPaths {
  name: string;
  dir: string;
  file: string;
  breaker: string;
}

type AcquireResult = { lock: HeldLock; holder?: undefined } | { lock?: undefined; holder: LockFileState | null };

function newToken(): string {
  return randomBytes(16).toString('hex');
}

function parseRecord(raw: string): LockRecord | null {
  try {
    const v: unknown = JSON.parse(raw);
    if (typeof v !== 'object' || v === null) return null;
    const r = v as Record<string, unknown>;
    if (typeof r.token !== 'string' || typeof r.expiresAt !== 'number' || !Number.isFinite(r.expiresAt)) return null;
    return {
      token: r.token,
      expiresAt: r.expiresAt,
      pid: typeof r.pid === 'number' ? r.pid : -1,
      hostname: typeof r.hostname === 'string' ? r.hostname : '?',
      name: typeof r.name === 'string' ? r.name : '?',
      acquiredAt: typeof r.acquiredAt === 'number' ? r.acquiredAt : 0,
    };
  } catch {
    return null;
  }
}

function isExpired(state: LockFileState, ttlMs: number, now = Date.now()): boolean {
  if (state.record !== null) return now >= state.record.expiresAt;
  return now >= state.mtimeMs + ttlMs;
}

function sameFile(a: LockFileState, b: LockFileState): boolean {
  return a.dev === b.dev && a.ino === b.ino && a.raw === b.raw;
}

function describeHolder(state: LockFileState | null): string {
  if (state === null) return 'no current holder (it was just released)';
  const r = state.record;
  if (r === null) return `an unreadable lock file (last modified ${new Date(state.mtimeMs).toISOString()})`;
  const left = r.expiresAt - Date.now();
  const expiry = left > 0 ? `expires in ${left} ms` : `expired ${-left} ms ago`;
  return `held by pid ${r.pid} on ${r.hostname} (token ${r.token.slice(0, 8)}…, ${expiry})`;
}

/**
 * The Storage lock methods of the file backend (see the protocol above), for locks below
 * `<root>/locks/`. Callers should check the work still needs doing after acquiring a lock: the
 * previous holder may have done it while they waited.
 */
export class LockFiles {
  /** `root` is the storage root (absolute); lock files live below `<root>/locks/`. */
  constructor(private readonly root: string) {}

  /** Storage.lock for this root: waits (polling every pollMs, ±20 %) until the lock is free or stale, or throws after waitMs. */
  async lock(name: string, opts: LockOptions): Promise<Lock> {
    const { ttlMs, waitMs, pollMs } = resolveLockOptions(name, opts, DEFAULT_LOCK_POLL_MS);
    const paths = this.lockPaths(name);
    const deadline = Date.now() + waitMs;
    for (;;) {
      const result = await this.acquire(paths, ttlMs);
      if (result.lock) return result.lock;
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        throw new StorageError(
          `timed out after ${waitMs} ms waiting for lock ${JSON.stringify(name)}: ${describeHolder(result.holder)}`,
          name,
          'lock',
        );
      }
      await sleep(Math.min(remaining, pollMs * (0.8 + Math.random() * 0.4)));
    }
  }

  /** Storage.tryLock for this root: the lock now (taking over a stale one), or null. */
  async tryLock(name: string, opts: LockOptions): Promise<Lock | null> {
    const { ttlMs } = resolveLockOptions(name, opts, DEFAULT_LOCK_POLL_MS);
    const result = await this.acquire(this.lockPaths(name), ttlMs);
    return result.lock ?? null;
  }

  private lockPaths(name: string): LockPaths {
    const parts = lockNameParts(name);
    const base = parts[parts.length - 1] ?? name;
    const dir = join(this.root, LOCKS_DIR, ...parts.slice(0, -1));
    return {
      name,
      dir,
      file: join(dir, base + LOCK_SUFFIX),
      breaker: join(dir, `.${base}${BREAKER_SUFFIX}`),
    };
  }

  private record(name: string, token: string, ttlMs: number): LockRecord {
    const now = Date.now();
    return { token, pid: process.pid, hostname: hostname(), expiresAt: now + ttlMs, name, acquiredAt: now };
  }

  /** Reads a lock or breaker file with its identity; null when it does not exist. */
  private async readLockFile(file: string, name: string): Promise<LockFileState | null> {
    let fh: FileHandle;
    try {
      fh = await open(file, 'r');
    } catch (err) {
      if (errno(err) === 'ENOENT') return null;
      throw fail(err, name, 'lock-read');
    }
    try {
      const st = await fh.stat();
      const raw = await fh.readFile('utf8');
      return { record: parseRecord(raw), raw, dev: st.dev, ino: st.ino, mtimeMs: st.mtimeMs };
    } catch (err) {
      throw fail(err, name, 'lock-read');
    } finally {
      await fh.close();
    }
  }

  /** Creates `file` with O_EXCL holding `record`; false if it already exists. */
  private async createExclusive(file: string, dir: string, record: LockRecord, name: string): Promise<boolean> {
    let fh: FileHandle | undefined;
    for (let attempt = 0; fh === undefined; attempt++) {
      try {
        fh = await open(file, 'wx', LOCK_FILE_MODE);
      } catch (err) {
        const code = errno(err);
        if (code === 'EEXIST') return false;
        if (code === 'ENOENT' && attempt < ENOENT_RETRIES) {
          await mkdirs(dir, name);
          continue;
        }
        throw fail(err, name, 'lock');
      }
    }
    try {
      try {
        await fh.writeFile(JSON.stringify(record));
      } finally {
        await fh.close();
      }
    } catch (err) {
      // Nobody else touches a fresh, unexpired file, so it is still ours to remove.
      await unlink(file).catch(() => {});
      throw fail(err, name, 'lock');
    }
    return true;
  }

  private newLock(paths: LockPaths, token: string, ttlMs: number): HeldLock {
    return new HeldLock(
      paths.name,
      () => this.refreshLock(paths, token, ttlMs),
      () => this.releaseLock(paths, token),
    );
  }

  private async acquire(paths: LockPaths, ttlMs: number): Promise<AcquireResult> {
    const { name } = paths;
    const token = newToken();
    for (let attempt = 0; ; attempt++) {
      if (await this.createExclusive(paths.file, paths.dir, this.record(name, token, ttlMs), name)) {
        return { lock: this.newLock(paths, token, ttlMs) };
      }
      const seen = await this.readLockFile(paths.file, name);
      if (seen === null) {
        // Released between our create and our read: try again, a few times.
        if (attempt < ENOENT_RETRIES) continue;
        return { holder: null };
      }
      if (!isExpired(seen, ttlMs)) return { holder: seen };

      // Stale: take it over, but only while holding the breaker (see the top of this file).
      const releaseBreaker = await this.tryBreaker(paths);
      if (releaseBreaker === null) return { holder: seen }; // someone else is on it; poll again
      try {
        const current = await this.readLockFile(paths.file, name);
        if (current !== null) {
          if (!sameFile(current, seen) || !isExpired(current, ttlMs)) return { holder: current };
          try {
            await unlink(paths.file);
          } catch (err) {
            if (errno(err) !== 'ENOENT') throw fail(err, name, 'lock-takeover');
          }
        }
        if (await this.createExclusive(paths.file, paths.dir, this.record(name, token, ttlMs), name)) {
          return { lock: this.newLock(paths, token, ttlMs) };
        }
        // A plain O_EXCL create won the (now free) lock between our unlink and our create.
        return { holder: await this.readLockFile(paths.file, name) };
      } finally {
        await releaseBreaker();
      }
    }
  }

  /**
   * Takes the breaker of a lock if it is free (or abandoned); returns its release function, or
   * null if another process holds it right now.
   */
  private async tryBreaker(paths: LockPaths): Promise<(() => Promise<void>) | null> {
    const { name } = paths;
    const token = newToken();
    for (let attempt = 0; attempt < 3; attempt++) {
      if (await this.createExclusive(paths.breaker, paths.dir, this.record(name, token, BREAKER_TTL_MS), name)) {
        return async () => {
          const current = await this.readLockFile(paths.breaker, name);
          if (current?.record?.token !== token) return; // broken while we held it (race 2)
          try {
            await unlink(paths.breaker);
          } catch (err) {
            if (errno(err) !== 'ENOENT') throw fail(err, name, 'lock-breaker');
          }
        };
      }
      const seen = await this.readLockFile(paths.breaker, name);
      if (seen === null) continue;
      if (!isExpired(seen, BREAKER_TTL_MS)) return null;
      await this.breakStale(paths.breaker, seen, name);
    }
    return null;
  }

  /** Waits for the breaker (refresh and release must not fail just because a waiter holds it). */
  private async acquireBreaker(paths: LockPaths, step: string): Promise<() => Promise<void>> {
    const deadline = Date.now() + BREAKER_TTL_MS * 2;
    for (;;) {
      const release = await this.tryBreaker(paths);
      if (release !== null) return release;
      if (Date.now() > deadline) {
        throw new StorageError(`could not get the breaker of lock ${JSON.stringify(paths.name)}`, paths.name, step);
      }
      await sleep(2 + Math.random() * 8);
    }
  }

  /**
   * Removes an abandoned breaker: rename it to a unique name (only one racer gets a given file),
   * check that what we renamed is the stale file we read, and if not, link it back (link never
   * overwrites, so a breaker created meanwhile is not clobbered; see race 3 at the top).
   */
  private async breakStale(file: string, seen: LockFileState, name: string): Promise<void> {
    const aside = join(dirname(file), tempName(basename(file), 'stale'));
    try {
      await rename(file, aside);
    } catch (err) {
      if (errno(err) === 'ENOENT') return; // someone else removed it first
      throw fail(err, name, 'lock-breaker');
    }
    try {
      const moved = await this.readLockFile(aside, name);
      if (moved !== null && !sameFile(moved, seen)) {
        try {
          await link(aside, file);
        } catch (err) {
          if (errno(err) !== 'EEXIST') throw fail(err, name, 'lock-breaker');
        }
      }
    } finally {
      await unlink(aside).catch(() => {});
    }
  }

  /** Replaces the lock file with an extended expiry if it is still ours (breaker held). */
  private async refreshLock(paths: LockPaths, token: string, ttlMs: number): Promise<void> {
    const releaseBreaker = await this.acquireBreaker(paths, 'refresh');
    try {
      const current = await this.readLockFile(paths.file, paths.name);
      if (current?.record?.token !== token) {
        throw new StorageError(
          `lock lost: ${JSON.stringify(paths.name)} was taken over, now ${describeHolder(current)}`,
          paths.name,
          'refresh',
        );
      }
      const record: LockRecord = { ...current.record, expiresAt: Date.now() + ttlMs };
      await writeAtomic(paths.file, Buffer.from(JSON.stringify(record)), LOCK_FILE_MODE, paths.name, false);
    } finally {
      await releaseBreaker();
    }
  }

  /** Removes the lock file if it is still ours (breaker held). */
  private async releaseLock(paths: LockPaths, token: string): Promise<void> {
    const releaseBreaker = await this.acquireBreaker(paths, 'release');
    try {
      const current = await this.readLockFile(paths.file, paths.name);
      if (current?.record?.token !== token) return; // taken over: not ours to remove
      try {
        await unlink(paths.file);
      } catch (err) {
        if (errno(err) !== 'ENOENT') throw fail(err, paths.name, 'release');
      }
    } finally {
      await releaseBreaker();
    }
  }
}
