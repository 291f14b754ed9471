// File-system storage backend. Every key is a file below the root, so the layout stays readable
// by a human (`certificates/<ca>/<domain>/cert.pem`), and locks are small JSON files below
// `<root>/locks/` that work across processes (and across hosts sharing the directory, provided
// their clocks agree).
//
// On-disk layout
//   <root>/<key>                        one file per key ('/' in keys = directories, mode 0700)
//   <root>/locks/<name>.lock            a held lock: {"token","pid","hostname","expiresAt",...}
//   <dir>/.<name>.<16 hex>.tmp          a write in progress (or left over by a crash)
//   <dir>/.<name>.<16 hex>.stale        a stale guard file being removed (see "Locks" below)
//   <root>/locks/<dir>/.<name>.lock.break   the guard ("breaker") of one lock, see below
// The dot files are internal: list() never returns them and keys that look like them are
// rejected. The `locks/` tree is reserved: put()/delete() refuse keys below it; get() and
// list('locks/') may read it (an admin page can show who holds what).
//
// list(prefix) uses plain string-prefix semantics, the same rule every backend can implement
// (`key.startsWith(prefix)`): `certificates/` and `certificates/abc` (matches
// `certificates/abcd/x`) both work, and `certificates` without the slash also matches
// `certificates-old/x`. Pass a trailing '/' to mean "this directory only". Lock files are
// listed only when the prefix is `locks` or starts with `locks/`.
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
import { readFile as readFileCallback } from 'node:fs';
import { link, mkdir, open, readdir, rename, rmdir, unlink, type FileHandle } from 'node:fs/promises';
import { hostname } from 'node:os';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import {
  HeldLock,
  resolveLockOptions,
  assertValidKey,
  StorageError,
  type Lock,
  type ListOptions,
  type LockOptions,
  type PutOptions,
  pageOf,
  type Storage,
} from '../storage.ts';
import { forEachConcurrently } from '../../util/concurrency.ts';

/** How often a waiter re-checks a held lock file. */
const DEFAULT_LOCK_POLL_MS = 100;

const DIR_MODE = 0o700;
const PRIVATE_FILE_MODE = 0o600;
const PUBLIC_FILE_MODE = 0o644;
const LOCK_FILE_MODE = 0o644;

/** Top-level directory holding the lock files; reserved (no put/delete of keys below it). */
const LOCKS_DIR = 'locks';
const LOCK_SUFFIX = '.lock';
const BREAKER_SUFFIX = '.lock.break';

/** A breaker older than this is considered abandoned (its holder died mid critical section). */
const BREAKER_TTL_MS = 5_000;

/** Temp files, renamed-away stale files and breakers; never listed, never valid as key parts. */
const INTERNAL_NAME = /^\.[^]*(?:\.[0-9a-f]{16}\.(?:tmp|stale)|\.lock\.break)$/;

/** How often to retry when a directory vanished under us (a concurrent delete pruned it). */
const ENOENT_RETRIES = 8;

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

function errno(err: unknown): string | undefined {
  if (err instanceof Error && 'code' in err && typeof err.code === 'string') return err.code;
  return undefined;
}

/** Wraps an fs error into a StorageError naming the key and the step. */
function fail(err: unknown, key: string, step: string): StorageError {
  if (err instanceof StorageError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new StorageError(`file storage: ${step} of ${JSON.stringify(key)} failed: ${message}`, key, step, {
    cause: err,
  });
}

function tempName(target: string, kind: 'tmp' | 'stale'): string {
  // Keep the name below the usual 255-byte limit even for long (or non-ASCII) targets.
  return `.${target.slice(0, 60)}.${randomBytes(8).toString('hex')}.${kind}`;
}

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


/** Directories read at once while listing (per level). */
const WALK_CONCURRENCY = 16;

export class FileStorage implements Storage {
  readonly root: string;
  readonly description: string;

  constructor(root: string) {
    this.root = resolve(root);
    this.description = `file:${this.root}`;
  }

  /** Creates the root directory (mode 0700) if needed. An existing root keeps its mode. */
  static async open(root: string): Promise<FileStorage> {
    const storage = new FileStorage(root);
    try {
      await mkdir(storage.root, { recursive: true, mode: DIR_MODE });
    } catch (err) {
      throw fail(err, '', 'open');
    }
    return storage;
  }

  async get(key: string): Promise<Buffer | null> {
    const file = this.pathOf(key);
    try {
      return await readWholeFile(file);
    } catch (err) {
      const code = errno(err);
      if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR') return null;
      throw fail(err, key, 'read');
    }
  }

  async put(key: string, value: Buffer | string, opts: PutOptions = {}): Promise<void> {
    const file = this.writablePathOf(key);
    const data = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
    await this.writeAtomic(file, data, opts.private === true ? PRIVATE_FILE_MODE : PUBLIC_FILE_MODE, key, true);
  }

  async delete(key: string): Promise<void> {
    const file = this.writablePathOf(key);
    try {
      await unlink(file);
    } catch (err) {
      const code = errno(err);
      // Missing, or a directory (not a key): nothing to delete.
      if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR') return;
      throw fail(err, key, 'delete');
    }
    await this.pruneEmptyDirs(dirname(file));
  }

  /** Paging (`opts`) still walks the whole prefix and returns a slice of the sorted result. */
  async list(prefix: string, opts?: ListOptions): Promise<string[]> {
    const slash = prefix.lastIndexOf('/');
    const dirKey = slash < 0 ? '' : prefix.slice(0, slash);
    const namePrefix = prefix.slice(slash + 1);
    try {
      if (dirKey !== '') assertValidKey(dirKey);
      if (prefix.length > 1024 || prefix.startsWith('/') || namePrefix.includes('\\') || namePrefix.includes('\0')) {
        assertValidKey('');
      }
    } catch (err) {
      throw new StorageError(`invalid list prefix ${JSON.stringify(prefix)}`, prefix, 'validate-key', { cause: err });
    }
    const includeLocks = prefix === LOCKS_DIR || prefix.startsWith(`${LOCKS_DIR}/`);
    const out: string[] = [];
    await this.walk(dirKey, namePrefix, includeLocks, out, prefix);
    return pageOf(out.sort(), opts);
  }

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

  async tryLock(name: string, opts: LockOptions): Promise<Lock | null> {
    const { ttlMs } = resolveLockOptions(name, opts, DEFAULT_LOCK_POLL_MS);
    const result = await this.acquire(this.lockPaths(name), ttlMs);
    return result.lock ?? null;
  }

  async close(): Promise<void> {
    // Nothing to close; held locks stay held until released or expired.
  }

  // ---------------------------------------------------------------------------------------------
  // Keys and files

  private pathOf(key: string): string {
    assertValidKey(key);
    if (key.split('/').some((part) => INTERNAL_NAME.test(part))) {
      throw new StorageError(`invalid storage key ${JSON.stringify(key)}: reserved internal file name`, key, 'validate-key');
    }
    return join(this.root, ...key.split('/'));
  }

  private writablePathOf(key: string): string {
    const file = this.pathOf(key);
    if (key === LOCKS_DIR || key.startsWith(`${LOCKS_DIR}/`)) {
      throw new StorageError(`invalid storage key ${JSON.stringify(key)}: ${LOCKS_DIR}/ is reserved for locks`, key, 'validate-key');
    }
    return file;
  }

  /**
   * Writes via a unique temp file in the target's directory, then renames it over the target,
   * so readers see the old or the new content, never a mix. With `durable`, the file and then
   * the directory are fsynced, so a crash leaves either the old or the new value.
   */
  private async writeAtomic(file: string, data: Buffer, mode: number, key: string, durable: boolean): Promise<void> {
    const dir = dirname(file);
    const tmp = join(dir, tempName(basename(file), 'tmp'));
    let fh: FileHandle | undefined;
    let firstCreated: string | undefined;
    for (let attempt = 0; fh === undefined; attempt++) {
      try {
        // Created with its final mode, so a private file is never readable by others.
        fh = await open(tmp, 'wx', mode);
      } catch (err) {
        if (errno(err) === 'ENOENT' && attempt < ENOENT_RETRIES) {
          firstCreated = (await this.mkdirs(dir, key)) ?? firstCreated;
          continue;
        }
        throw fail(err, key, 'write');
      }
    }
    try {
      try {
        await fh.writeFile(data);
        await fh.chmod(mode); // exact mode whatever the umask (never adds bits beyond `mode`)
        if (durable) await fh.sync();
      } finally {
        await fh.close();
      }
    } catch (err) {
      await unlink(tmp).catch(() => {});
      throw fail(err, key, 'write');
    }
    try {
      await rename(tmp, file);
    } catch (err) {
      await unlink(tmp).catch(() => {});
      throw fail(err, key, 'rename');
    }
    if (!durable) return;
    await this.syncDir(dir, key);
    if (firstCreated !== undefined) {
      // New directories: their entries in their parents must be durable too.
      const top = dirname(firstCreated);
      for (let d = dirname(dir); ; d = dirname(d)) {
        await this.syncDir(d, key);
        if (d === top || d === dirname(d)) break;
      }
    }
  }

  /** mkdir -p with mode 0700; returns the first directory it created, if any. */
  private async mkdirs(dir: string, key: string): Promise<string | undefined> {
    try {
      return await mkdir(dir, { recursive: true, mode: DIR_MODE });
    } catch (err) {
      throw fail(err, key, 'mkdir');
    }
  }

  private async syncDir(dir: string, key: string): Promise<void> {
    let fh: FileHandle;
    try {
      fh = await open(dir, 'r');
    } catch (err) {
      if (errno(err) === 'ENOENT') return; // pruned by a concurrent delete of this very key
      throw fail(err, key, 'fsync-dir');
    }
    try {
      await fh.sync();
    } catch (err) {
      const code = errno(err);
      // Some file systems do not support fsync on directories.
      if (code !== 'EINVAL' && code !== 'ENOTSUP' && code !== 'EPERM' && code !== 'EBADF') throw fail(err, key, 'fsync-dir');
    } finally {
      await fh.close();
    }
  }

  /** Removes `dir` and its ancestors while they are empty, stopping below the root. */
  private async pruneEmptyDirs(dir: string): Promise<void> {
    let current = dir;
    while (current !== this.root && current.startsWith(this.root + sep)) {
      try {
        await rmdir(current);
      } catch {
        return; // not empty (ENOTEMPTY/EEXIST), already gone, or not ours to remove
      }
      current = dirname(current);
    }
  }

  private async walk(dirKey: string, namePrefix: string, includeLocks: boolean, out: string[], prefix: string): Promise<void> {
    const dir = dirKey === '' ? this.root : join(this.root, ...dirKey.split('/'));
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      const code = errno(err);
      if (code === 'ENOENT' || code === 'ENOTDIR') return;
      throw fail(err, prefix, 'list');
    }
    const subdirs: string[] = [];
    for (const entry of entries) {
      const name = entry.name;
      if (!name.startsWith(namePrefix)) continue;
      const key = dirKey === '' ? name : `${dirKey}/${name}`;
      if (entry.isDirectory()) {
        if (dirKey === '' && name === LOCKS_DIR && !includeLocks) continue;
        subdirs.push(key);
      } else if (entry.isFile() && !INTERNAL_NAME.test(name)) {
        out.push(key);
      }
      // Symlinks and other special files are never created by this backend and are not listed.
    }
    // A few directories at a time: 100k sibling directories read all at once held ~270 MB of
    // pending reads and Dirents (measured listing 100k certificates).
    await forEachConcurrently(subdirs, WALK_CONCURRENCY, (key) => this.walk(key, '', includeLocks, out, prefix));
  }

  // ---------------------------------------------------------------------------------------------
  // Locks

  private lockPaths(name: string): LockPaths {
    let parts: string[];
    try {
      assertValidKey(name);
      parts = name.split('/');
      // A directory part ending in ".lock" could collide with the lock file of a shorter name.
      if (parts.slice(0, -1).some((part) => part.endsWith(LOCK_SUFFIX))) assertValidKey('');
    } catch (err) {
      throw new StorageError(`invalid lock name ${JSON.stringify(name)}`, name, 'validate-key', { cause: err });
    }
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
          await this.mkdirs(dir, name);
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
      await this.writeAtomic(paths.file, Buffer.from(JSON.stringify(record)), LOCK_FILE_MODE, paths.name, false);
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

/**
 * fs.readFile with a callback: the promise version runs open/fstat/read/close as separate
 * promise steps; this costs 10-25% less CPU per small file (cold handshakes read two).
 */
function readWholeFile(file: string): Promise<Buffer> {
  return new Promise((resolve, reject) => readFileCallback(file, (err, data) => (err ? reject(err) : resolve(data))));
}
