// Writing one file so that readers see the old content or the new, never a mix, and (when asked)
// a crash leaves one or the other too:
//   1. create a unique temp file `.<name>.<16 hex>.tmp` beside the target, with its final mode
//      (a private file is never readable by others, whatever the umask);
//   2. write, chmod, fsync (durable writes);
//   3. rename it over the target (atomic on POSIX);
//   4. fsync the directory, and the parents of any directory step 1 had to create (durable).
// Missing directories are created (mode 0700) and the create retried: a concurrent delete may
// prune an empty directory between our mkdir and our create. writeAtomicMany does steps 1-2 for
// several files at once, step 3 in their order, and step 4 once per directory.
import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

import { StorageError } from '../storage.ts';

/** Mode of every directory the file backend creates: only the gateway's user may list it. */
export const DIR_MODE = 0o700;

/** How often to retry when a directory vanished under us (a concurrent delete pruned it). */
export const ENOENT_RETRIES = 8;

/** The errno code of an fs error (`ENOENT`, ...), or undefined for anything else. */
export function errno(err: unknown): string | undefined {
  if (err instanceof Error && 'code' in err && typeof err.code === 'string') return err.code;
  return undefined;
}

/** Wraps an fs error into a StorageError naming the key and the step (a StorageError passes through). */
export function fail(err: unknown, key: string, step: string): StorageError {
  if (err instanceof StorageError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new StorageError(`file storage: ${step} of ${JSON.stringify(key)} failed: ${message}`, key, step, {
    cause: err,
  });
}

/**
 * A unique internal name beside `target` (matches keys.ts INTERNAL_NAME, so it is never listed
 * and never a valid key): `tmp` for writes in progress, `stale` for files being removed.
 */
export function tempName(target: string, kind: 'tmp' | 'stale'): string {
  // Keep the name below the usual 255-byte limit even for long (or non-ASCII) targets.
  return `.${target.slice(0, 60)}.${randomBytes(8).toString('hex')}.${kind}`;
}

/** mkdir -p with mode 0700; returns the first directory it created, if any. Errors name `key`. */
export async function mkdirs(dir: string, key: string): Promise<string | undefined> {
  try {
    return await mkdir(dir, { recursive: true, mode: DIR_MODE });
  } catch (err) {
    throw fail(err, key, 'mkdir');
  }
}

/**
 * Writes `data` to `file` with `mode` via a temp file and a rename (steps 1-3 above), so readers
 * see the old or the new content, never a mix. With `durable`, the file and then the
 * directories are fsynced (step 4), so a crash leaves either the old or the new value. Errors
 * are StorageErrors naming `key` and the step ('write', 'rename', 'mkdir', 'fsync-dir').
 */
export async function writeAtomic(file: string, data: Buffer, mode: number, key: string, durable: boolean): Promise<void> {
  const temp = await writeTemp({ file, data, mode, key, durable });
  await renameTemp(temp);
  if (durable) await syncDirs(dirsToSync([temp]), key);
}

/** One file of writeAtomicMany: as the arguments of writeAtomic. */
export interface AtomicWrite {
  /** The target file (absolute). */
  file: string;
  /** Its whole new content. */
  data: Buffer;
  /** Its file mode (0600 for private values). */
  mode: number;
  /** The storage key, for errors. */
  key: string;
  /** fsync the file and its directory (step 4). */
  durable: boolean;
}

/**
 * writeAtomic for several files at once, cheaper than one after the other: every temp file is
 * written (and, when durable, fsynced) concurrently, then the temp files are renamed into place
 * strictly in the given order, then each directory holding a durable file is fsynced once. So a
 * reader, or a process crash, that finds one of the files finds every file before it too. After
 * a power loss, that ordering rests on the file system committing renames in one directory in
 * order (ext4, xfs, btrfs journal them so); callers must treat a missing earlier file as "none"
 * (a chain without its key is not served: store.ts loadCertificate). If a write fails, no file is
 * renamed; if a rename fails, the files before it are in place and the rest are not. Errors are
 * StorageErrors naming the key of the file that failed and the step.
 */
export async function writeAtomicMany(writes: readonly AtomicWrite[]): Promise<void> {
  const settled = await Promise.allSettled(writes.map((w) => writeTemp(w)));
  const temps = settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const failed = settled.find((r) => r.status === 'rejected');
  if (failed) {
    await Promise.all(temps.map((t) => unlink(t.tmp).catch(() => {})));
    throw failed.reason;
  }
  for (const [i, temp] of temps.entries()) {
    try {
      await renameTemp(temp);
    } catch (err) {
      await Promise.all(temps.slice(i + 1).map((t) => unlink(t.tmp).catch(() => {})));
      throw err;
    }
  }
  const durable = temps.filter((t) => t.durable);
  if (durable.length > 0) await syncDirs(dirsToSync(durable), durable[0]!.key);
}

/** A written temp file waiting for its rename, and the first directory its write had to create. */
interface TempFile extends AtomicWrite {
  tmp: string;
  firstCreated: string | undefined;
}

/** Steps 1-2: the temp file beside `file`, written with its mode (and fsynced when durable). */
async function writeTemp(w: AtomicWrite): Promise<TempFile> {
  const dir = dirname(w.file);
  const tmp = join(dir, tempName(basename(w.file), 'tmp'));
  let fh: FileHandle | undefined;
  let firstCreated: string | undefined;
  for (let attempt = 0; fh === undefined; attempt++) {
    try {
      // Created with its final mode, so a private file is never readable by others.
      fh = await open(tmp, 'wx', w.mode);
    } catch (err) {
      if (errno(err) === 'ENOENT' && attempt < ENOENT_RETRIES) {
        firstCreated = (await mkdirs(dir, w.key)) ?? firstCreated;
        continue;
      }
      throw fail(err, w.key, 'write');
    }
  }
  try {
    try {
      await fh.writeFile(w.data);
      await fh.chmod(w.mode); // exact mode whatever the umask (never adds bits beyond `mode`)
      if (w.durable) await fh.sync();
    } finally {
      await fh.close();
    }
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw fail(err, w.key, 'write');
  }
  return { ...w, tmp, firstCreated };
}

/** Step 3: the temp file renamed over its target (removed if that fails). */
async function renameTemp(temp: TempFile): Promise<void> {
  try {
    await rename(temp.tmp, temp.file);
  } catch (err) {
    await unlink(temp.tmp).catch(() => {});
    throw fail(err, temp.key, 'rename');
  }
}

/**
 * Every directory step 4 must fsync for `temps`, each once: the file's own, and for a write that
 * had to create directories, every parent up to the one that holds the first it created (the
 * new directories' entries must be durable too).
 */
function dirsToSync(temps: readonly TempFile[]): string[] {
  const dirs = new Set<string>();
  for (const { file, firstCreated } of temps) {
    const dir = dirname(file);
    dirs.add(dir);
    if (firstCreated === undefined) continue;
    const top = dirname(firstCreated);
    for (let d = dirname(dir); ; d = dirname(d)) {
      dirs.add(d);
      if (d === top || d === dirname(d)) break;
    }
  }
  return [...dirs];
}

/** fsyncs every one of `dirs`, at once. */
async function syncDirs(dirs: readonly string[], key: string): Promise<void> {
  await Promise.all(dirs.map((d) => syncDir(d, key)));
}

async function syncDir(dir: string, key: string): Promise<void> {
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
