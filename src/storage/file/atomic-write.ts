// Writing one file so that readers see the old content or the new, never a mix, and (when asked)
// a crash leaves one or the other too:
//   1. create a unique temp file `.<name>.<16 hex>.tmp` beside the target, with its final mode
//      (a private file is never readable by others, whatever the umask);
//   2. write, chmod, fsync (durable writes);
//   3. rename it over the target (atomic on POSIX);
//   4. fsync the directory, and the parents of any directory step 1 had to create (durable).
// Missing directories are created (mode 0700) and the create retried: a concurrent delete may
// prune an empty directory between our mkdir and our create.
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
        firstCreated = (await mkdirs(dir, key)) ?? firstCreated;
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
  if (durable) await syncDirs(dir, firstCreated, key);
}

/** fsyncs `dir`, then, if `firstCreated` is set, every parent up to the one that holds it. */
async function syncDirs(dir: string, firstCreated: string | undefined, key: string): Promise<void> {
  await syncDir(dir, key);
  if (firstCreated === undefined) return;
  // New directories: their entries in their parents must be durable too.
  const top = dirname(firstCreated);
  for (let d = dirname(dir); ; d = dirname(d)) {
    await syncDir(d, key);
    if (d === top || d === dirname(d)) break;
  }
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
