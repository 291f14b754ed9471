// FileStorage: the storage contract (contract.ts), then what only the file backend does: its
// on-disk layout and modes, atomic renames, directory pruning, crash leftovers, and lock files
// left by dead processes.
import assert from 'node:assert/strict';
import { mkdir, open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { FileStorage } from '../../src/storage/file/store.ts';
import type { Storage } from '../../src/storage/storage.ts';
import { tmpDir } from '../support/tmp.ts';
import { describeStorageContract, exited, expectLine, lockHolder, rejectsWith, spawnChild } from './contract.ts';

async function newStorage(t: TestContext): Promise<{ storage: FileStorage; root: string }> {
  const root = join(await tmpDir(t, 'certgate-file-'), 'data');
  return { storage: await FileStorage.open(root), root };
}

const rootOf = (storage: Storage): string => storage.description.slice('file:'.length);

/** How many FileHandle.sync() calls (file and directory fsyncs) `work` makes; `probeFile` is any existing file. */
async function fsyncsDuring(probeFile: string, work: () => Promise<unknown>): Promise<number> {
  const probe = await open(probeFile, 'r');
  const proto = Object.getPrototypeOf(probe) as { sync: () => Promise<void> };
  await probe.close();
  const realSync = proto.sync;
  let syncs = 0;
  proto.sync = function (this: unknown) {
    syncs++;
    return realSync.call(this);
  };
  try {
    await work();
  } finally {
    proto.sync = realSync;
  }
  return syncs;
}

async function mode(path: string): Promise<number> {
  return (await stat(path)).mode & 0o777;
}

/** Writes a lock file as a dead holder would have left it. */
async function plantLock(root: string, name: string, expiresAt: number, pid = 999_999): Promise<string> {
  const file = join(root, 'locks', `${name}.lock`);
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, JSON.stringify({ token: 'dead'.repeat(8), pid, hostname: 'gone', expiresAt, name }));
  return file;
}

describeStorageContract('FileStorage', {
  open: async (t) => (await newStorage(t)).storage,
  openSibling: async (_t, storage) => new FileStorage(rootOf(storage)),
  childSpec: (storage) => ({ file: rootOf(storage) }),
  async lockExpiresAt(storage, name) {
    const holder = (await lockHolder(storage, name)) as { expiresAt?: number } | null;
    assert.equal(typeof holder?.expiresAt, 'number', `lock file of ${name} has an expiresAt`);
    return { earliest: holder!.expiresAt!, latest: holder!.expiresAt! }; // stored as a time: exact
  },
  async plantExpiredLock(storage, name) {
    await plantLock(rootOf(storage), name, Date.now() - 1_000);
  },
});

describe('FileStorage: files on disk', () => {
  test('description and human-readable layout', { timeout: 10_000 }, async (t) => {
    const { storage, root } = await newStorage(t);
    assert.equal(storage.description, `file:${root}`);
    await storage.put('certificates/ca/blog.alice.com/cert.pem', Buffer.from([0, 1, 2, 255]));
    assert.deepEqual(await readdir(join(root, 'certificates/ca/blog.alice.com')), ['cert.pem']);
    assert.deepEqual(await storage.get('certificates/ca/blog.alice.com/cert.pem'), Buffer.from([0, 1, 2, 255]));
    assert.deepEqual(await readFile(join(root, 'certificates/ca/blog.alice.com/cert.pem')), Buffer.from([0, 1, 2, 255]));
    await storage.close();
  });

  test('delete: empty parents are pruned, never the root', { timeout: 10_000 }, async (t) => {
    const { storage, root } = await newStorage(t);
    await storage.put('a/b/c/one', '1');
    await storage.put('a/two', '2');
    await storage.delete('a/b/c/one');
    assert.deepEqual(await readdir(join(root, 'a')), ['two']);
    await storage.delete('a'); // a directory, not a key: nothing happens
    assert.deepEqual(await readdir(join(root, 'a')), ['two']);
    await storage.delete('a/two');
    assert.deepEqual(await readdir(root), []);
    assert.equal((await stat(root)).isDirectory(), true);
    await storage.put('top', 't');
    await storage.delete('top');
    assert.deepEqual(await readdir(root), []);
  });

  test('a put racing with a delete that prunes the same directories still succeeds', { timeout: 10_000 }, async (t) => {
    const { storage } = await newStorage(t);
    for (let i = 0; i < 100; i++) {
      await storage.put('p/q/r/old', 'old');
      await Promise.all([storage.delete('p/q/r/old'), storage.put(`p/q/r/new${i}`, String(i))]);
      assert.deepEqual(await storage.get(`p/q/r/new${i}`), Buffer.from(String(i)));
      await storage.delete(`p/q/r/new${i}`);
    }
    assert.deepEqual(await storage.list(''), []);
  });

  test('list: a crashed writer\'s temp file and stale lock leftovers are not listed', { timeout: 10_000 }, async (t) => {
    const { storage, root } = await newStorage(t);
    await storage.put('certificates/ca/alpha.com/cert.pem', 'complete');
    await writeFile(join(root, 'certificates/ca/alpha.com/.cert.pem.0123456789abcdef.tmp'), 'partial');
    const lock = await storage.tryLock('issue/alpha.com', { ttlMs: 10_000 });
    assert.ok(lock);
    await writeFile(join(root, 'locks/issue/.alpha.com.lock.fedcba9876543210.stale'), 'x');
    assert.deepEqual(await storage.list(''), ['certificates/ca/alpha.com/cert.pem']);
    assert.deepEqual(await storage.list('certificates/ca/alpha.com/'), ['certificates/ca/alpha.com/cert.pem']);
    assert.deepEqual(await storage.list('locks/'), ['locks/issue/alpha.com.lock']);
    await lock.release();
    assert.deepEqual(await storage.list('locks/'), []);
    // The old value survived the "crash".
    assert.deepEqual(await storage.get('certificates/ca/alpha.com/cert.pem'), Buffer.from('complete'));
  });

  test('fs errors are wrapped with the key and the step', { timeout: 10_000 }, async (t) => {
    const { storage } = await newStorage(t);
    await storage.put('file', 'x');
    const err = await rejectsWith(storage.put('file/below', 'y'), 'write');
    assert.equal(err.key, 'file/below');
    assert.ok(err.cause instanceof Error);
  });

  test('modes: private 0600, others 0644, directories 0700', { timeout: 10_000 }, async (t) => {
    const { storage, root } = await newStorage(t);
    assert.equal(await mode(root), 0o700);
    await storage.put('accounts/ca/account.key', 'secret', { private: true });
    await storage.put('certificates/ca/a.com/cert.pem', 'public');
    assert.equal(await mode(join(root, 'accounts/ca/account.key')), 0o600);
    assert.equal(await mode(join(root, 'certificates/ca/a.com/cert.pem')), 0o644);
    for (const dir of ['accounts', 'accounts/ca', 'certificates', 'certificates/ca', 'certificates/ca/a.com']) {
      assert.equal(await mode(join(root, dir)), 0o700, dir);
    }
    // The mode follows the latest put.
    await storage.put('certificates/ca/a.com/cert.pem', 'now secret', { private: true });
    assert.equal(await mode(join(root, 'certificates/ca/a.com/cert.pem')), 0o600);
    await storage.put('accounts/ca/account.key', 'public now');
    assert.equal(await mode(join(root, 'accounts/ca/account.key')), 0o644);
    // Whatever the umask.
    const old = process.umask(0o077);
    try {
      await storage.put('umask/public', 'p');
    } finally {
      process.umask(old);
    }
    assert.equal(await mode(join(root, 'umask/public')), 0o644);
    assert.equal(await mode(join(root, 'umask')), 0o700);
    const lock = await storage.tryLock('issue/a.com', { ttlMs: 1000 });
    assert.equal(await mode(join(root, 'locks/issue')), 0o700);
    await lock?.release();
  });

  test('atomic puts: concurrent writers of large values never produce a torn read', { timeout: 20_000 }, async (t) => {
    const { storage, root } = await newStorage(t);
    const size = 1024 * 1024;
    const values = Array.from({ length: 6 }, (_, i) => Buffer.alloc(size, 65 + i));
    await storage.put('big/value', values[0]!);
    let writing = true;
    let reads = 0;
    let problem: string | undefined;
    // The reader records problems instead of throwing, so it never outlives the test.
    const reader = (async () => {
      while (writing && problem === undefined) {
        const got = await storage.get('big/value');
        if (got === null) problem = 'value vanished during an overwrite';
        else if (!values.some((v) => v.equals(got))) {
          problem = `torn read: ${got.length} bytes, first ${got[0]}, last ${got[got.length - 1]}`;
        }
        reads++;
      }
    })();
    try {
      await Promise.all(
        values.map(async (value) => {
          for (let round = 0; round < 5; round++) await storage.put('big/value', value, { private: round % 2 === 0 });
        }),
      );
    } finally {
      writing = false;
      await reader;
    }
    assert.equal(problem, undefined);
    assert.ok(reads > 5, `only ${reads} reads happened`);
    assert.deepEqual(await readdir(join(root, 'big')), ['value'], 'no temp files left behind');
  });

  test('a writer killed mid-put leaves a complete value', { timeout: 20_000 }, async (t) => {
    const { storage, root } = await newStorage(t);
    const size = 4 * 1024 * 1024;
    await storage.put('big', Buffer.alloc(size, 0));
    const child = spawnChild(t, 'write', { file: root }, ['big', String(size)]);
    await expectLine(child, 'writing');
    await sleep(50 + Math.random() * 100);
    child.kill('SIGKILL');
    assert.equal((await exited(child)).signal, 'SIGKILL');
    const got = await storage.get('big');
    assert.ok(got !== null);
    assert.equal(got.length, size);
    assert.ok(got.every((b) => b === got[0]), 'value is a mix of two writes');
    assert.deepEqual(await storage.list(''), ['big']);
  });
});

describe('FileStorage: durability', () => {
  test('a put is fsynced (file and directory) unless it says durable: false (challenge tokens)', { timeout: 10_000 }, async (t) => {
    const { storage, root } = await newStorage(t);
    await storage.put('challenges/http-01/warm', 'x'); // directories exist from here on
    const probe = join(root, 'challenges/http-01/warm');
    assert.equal(await fsyncsDuring(probe, () => storage.put('challenges/http-01/tok1', 'key-authorization', { durable: false })), 0, 'no fsync for a non-durable put');
    assert.equal(await fsyncsDuring(probe, () => storage.put('challenges/http-01/tok2', 'key-authorization')), 2, 'a durable put fsyncs the file and its directory');
    // Visible to every process at once all the same.
    assert.equal((await new FileStorage(root).get('challenges/http-01/tok1'))?.toString(), 'key-authorization');
    await storage.close();
  });
});

describe('FileStorage: putMany (a certificate bundle and its index entries)', () => {
  const bundle = (n: string) => [
    { key: `certificates/ca/${n}/key.pem`, value: `key ${n}`, opts: { private: true } },
    { key: `certificates/ca/${n}/meta.json`, value: `meta ${n}` },
    { key: `certificates/ca/${n}/cert.pem`, value: `chain ${n}` },
    { key: `index/expiry/h/${n}`, value: `expiry ${n}` },
    { key: `index/renewal/h/${n}`, value: `renewal ${n}` },
  ];

  test('fsyncs every file and each directory once: 5 values in 3 directories cost 8 fsyncs, not 10', { timeout: 10_000 }, async (t) => {
    const { storage, root } = await newStorage(t);
    await storage.putMany(bundle('a.test')); // directories exist from here on
    assert.equal(await mode(join(root, 'certificates/ca/a.test/key.pem')), 0o600);
    assert.equal(await mode(join(root, 'certificates/ca/a.test/cert.pem')), 0o644);
    const syncs = await fsyncsDuring(join(root, 'certificates/ca/a.test/cert.pem'), () => storage.putMany(bundle('a.test')));
    assert.equal(syncs, 5 + 3, 'one fsync per file, one per directory');
    assert.equal((await storage.get('index/renewal/h/a.test'))?.toString(), 'renewal a.test');
  });

  test('a rename failing half-way leaves the values before it in place (key without chain), none after it, no temp files', { timeout: 10_000 }, async (t) => {
    const { storage, root } = await newStorage(t);
    // The chain's target is a non-empty directory: its rename fails after key.pem and meta.json.
    await mkdir(join(root, 'certificates/ca/b.test/cert.pem/blocker'), { recursive: true });
    const err = await rejectsWith(storage.putMany(bundle('b.test')), 'rename');
    assert.equal(err.key, 'certificates/ca/b.test/cert.pem');
    assert.equal((await storage.get('certificates/ca/b.test/key.pem'))?.toString(), 'key b.test');
    assert.equal((await storage.get('certificates/ca/b.test/meta.json'))?.toString(), 'meta b.test');
    assert.equal(await storage.get('index/expiry/h/b.test'), null, 'nothing after the failed rename');
    assert.deepEqual((await readdir(join(root, 'certificates/ca/b.test'))).sort(), ['cert.pem', 'key.pem', 'meta.json']);
    assert.deepEqual(await readdir(join(root, 'index/expiry/h')), [], 'the later temp files are removed');
    // A write failing (a file where a directory must be): nothing is renamed at all.
    await storage.put('certificates/ca/c.test/key.pem', 'old key');
    await rm(join(root, 'index/renewal/h'), { recursive: true, force: true });
    await writeFile(join(root, 'index/renewal/h'), 'a file, not a directory');
    await rejectsWith(storage.putMany(bundle('c.test')), 'write');
    assert.equal((await storage.get('certificates/ca/c.test/key.pem'))?.toString(), 'old key', 'no value replaced when a write failed');
    assert.deepEqual(await readdir(join(root, 'certificates/ca/c.test')), ['key.pem'], 'no temp files left');
  });

  test('a writer killed mid-putMany never leaves a chain without its key, nor a chain newer than its key', { timeout: 30_000 }, async (t) => {
    const { storage, root } = await newStorage(t);
    for (let round = 0; round < 3; round++) {
      const prefix = `r${round}`;
      const child = spawnChild(t, 'bundle', { file: root }, [prefix, '20000']);
      await expectLine(child, 'writing');
      await sleep(30 + Math.random() * 120);
      child.kill('SIGKILL');
      assert.equal((await exited(child)).signal, 'SIGKILL');
      const version = async (key: string): Promise<number | null> => {
        const v = await storage.get(key);
        return v === null ? null : Number(v.toString().split(':')[0]);
      };
      const dirs = new Set((await storage.list(`${prefix}/`)).map((k) => k.split('/')[1]!));
      assert.ok(dirs.size > 1, `round ${round}: the child wrote ${dirs.size} bundles`);
      for (const d of dirs) {
        const cert = await version(`${prefix}/${d}/cert.pem`);
        const key = await version(`${prefix}/${d}/key.pem`);
        if (cert === null) continue;
        assert.ok(key !== null && key >= cert, `round ${round}, ${d}: chain ${cert} with key ${key}`);
      }
    }
  });
});

describe('FileStorage: lock files', () => {
  test('refresh replaces the lock file atomically: no temp files left in locks/', { timeout: 10_000 }, async (t) => {
    const { storage, root } = await newStorage(t);
    const lock = await storage.tryLock('renew', { ttlMs: 60_000 });
    assert.ok(lock);
    for (let i = 0; i < 5; i++) await lock.refresh();
    assert.deepEqual(await readdir(join(root, 'locks')), ['renew.lock']);
    await lock.release();
    assert.deepEqual(await readdir(join(root, 'locks')), []);
  });

  test('a stale lock file left by a dead process is taken over by exactly one of many racers', { timeout: 10_000 }, async (t) => {
    const { root } = await newStorage(t);
    for (let round = 0; round < 5; round++) {
      await plantLock(root, 'race', Date.now() - 10);
      const racers = Array.from({ length: 16 }, () => new FileStorage(root));
      const got = await Promise.all(racers.map((s) => s.tryLock('race', { ttlMs: 10_000 })));
      const winners = got.filter((l) => l !== null);
      assert.equal(winners.length, 1, `round ${round}: ${winners.length} winners`);
      await winners[0]!.release();
    }
    // An unparseable lock file (creator crashed before writing) counts as stale after ttl by mtime.
    await writeFile(join(root, 'locks/garbled.lock'), '');
    const s = new FileStorage(root);
    assert.equal(await s.tryLock('garbled', { ttlMs: 10_000 }), null);
    await sleep(100);
    const lock = await s.tryLock('garbled', { ttlMs: 50 });
    assert.ok(lock);
    await lock.release();
  });
});
