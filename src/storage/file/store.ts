// File-system storage backend. Every key is a file below the root, so the layout stays readable
// by a human (`certificates/<ca>/<domain>/cert.pem`). Values are written by atomic-write.ts
// (temp file + rename); locks are small JSON files below `<root>/locks/` (lock-files.ts, which
// describes the lock protocol). README.md sums up the layout and the guarantees.
//
// On-disk layout
//   <root>/<key>                        one file per key ('/' in keys = directories, mode 0700)
//   <root>/locks/<name>.lock            a held lock: {"token","pid","hostname","expiresAt",...}
//   <dir>/.<name>.<16 hex>.tmp          a write in progress (or left over by a crash)
//   <dir>/.<name>.<16 hex>.stale        a stale guard file being removed (see lock-files.ts)
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
import { readFile as readFileCallback } from 'node:fs';
import { mkdir, readdir, rmdir, unlink } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';

import { forEachConcurrently } from '../../util/concurrency.ts';
import { assertReadableKey, assertWritableKey, INTERNAL_NAME, isLocksPrefix, LOCKS_DIR, splitListPrefix } from '../keys.ts';
import { pageOf, type ListOptions, type Lock, type LockOptions, type PutEntry, type PutOptions, type Storage } from '../storage.ts';
import { DIR_MODE, errno, fail, writeAtomic, writeAtomicMany, type AtomicWrite } from './atomic-write.ts';
import { LockFiles } from './lock-files.ts';

const PRIVATE_FILE_MODE = 0o600;
const PUBLIC_FILE_MODE = 0o644;

/** Directories read at once while listing (per level). */
const WALK_CONCURRENCY = 16;

/**
 * Storage in a directory tree (see the layout above): one file per key, written atomically and
 * durably, locks that work across processes on one host (or hosts sharing the directory with
 * synchronized clocks). Several processes may open the same root. Open it with FileStorage.open.
 */
export class FileStorage implements Storage {
  /** The absolute storage root; keys are files below it. */
  readonly root: string;
  readonly description: string;
  readonly #locks: LockFiles;

  /** Does not touch the disk; prefer FileStorage.open, which creates the root. */
  constructor(root: string) {
    this.root = resolve(root);
    this.description = `file:${this.root}`;
    this.#locks = new LockFiles(this.root);
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
    const file = this.fileOf(key, assertReadableKey);
    try {
      return await readWholeFile(file);
    } catch (err) {
      const code = errno(err);
      if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR') return null;
      throw fail(err, key, 'read');
    }
  }

  async put(key: string, value: Buffer | string, opts: PutOptions = {}): Promise<void> {
    const w = this.atomicWrite({ key, value, opts });
    await writeAtomic(w.file, w.data, w.mode, key, w.durable);
  }

  /** Every temp file written and fsynced at once, renamed in order, each directory fsynced once (writeAtomicMany). */
  async putMany(entries: readonly PutEntry[]): Promise<void> {
    const writes = entries.map((e) => this.atomicWrite(e)); // every key checked before any write
    await writeAtomicMany(writes);
  }

  async delete(key: string): Promise<void> {
    const file = this.fileOf(key, assertWritableKey);
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
    const { dirKey, namePrefix } = splitListPrefix(prefix);
    const includeLocks = isLocksPrefix(prefix);
    const out: string[] = [];
    await this.walk(dirKey, namePrefix, includeLocks, out, prefix);
    return pageOf(out.sort(), opts);
  }

  lock(name: string, opts: LockOptions): Promise<Lock> {
    return this.#locks.lock(name, opts);
  }

  tryLock(name: string, opts: LockOptions): Promise<Lock | null> {
    return this.#locks.tryLock(name, opts);
  }

  async close(): Promise<void> {
    // Nothing to close; held locks stay held until released or expired.
  }

  /** How put() writes `entry` (the key checked first). */
  private atomicWrite({ key, value, opts = {} }: PutEntry): AtomicWrite {
    const file = this.fileOf(key, assertWritableKey);
    const data = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
    return { file, data, mode: opts.private === true ? PRIVATE_FILE_MODE : PUBLIC_FILE_MODE, key, durable: opts.durable !== false };
  }

  /** The file of `key`, once `rule` (readable or writable, keys.ts) accepted it. */
  private fileOf(key: string, rule: (key: string) => void): string {
    rule(key);
    return join(this.root, ...key.split('/'));
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
}

/**
 * fs.readFile with a callback: the promise version runs open/fstat/read/close as separate
 * promise steps; this costs 10-25% less CPU per small file (cold handshakes read two).
 */
function readWholeFile(file: string): Promise<Buffer> {
  return new Promise((resolve, reject) => readFileCallback(file, (err, data) => (err ? reject(err) : resolve(data))));
}
