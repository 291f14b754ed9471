import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

import { FileStorage } from '../../src/storage/file.ts';
import { StorageError } from '../../src/storage/storage.ts';
import { tmpDir } from '../support/tmp.ts';
import { assertListPrefixForms, LIST_FIXTURE_KEYS } from './list-fixture.ts';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, '../..');
const nodeBin = join(repoRoot, 'node_modules/.bin/node');
const childScript = join(here, 'file-child.ts');

async function newStorage(t: Parameters<typeof tmpDir>[0]): Promise<{ storage: FileStorage; root: string }> {
  const root = join(await tmpDir(t, 'certgate-file-'), 'data');
  return { storage: await FileStorage.open(root), root };
}

async function mode(path: string): Promise<number> {
  return (await stat(path)).mode & 0o777;
}

async function rejectsWith(promise: Promise<unknown>, step: string, message?: RegExp): Promise<StorageError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof StorageError, `expected a StorageError, got ${String(err)}`);
    assert.equal(err.step, step, err.message);
    if (message) assert.match(err.message, message);
    return err;
  }
  assert.fail(`expected a StorageError (step ${step})`);
}

/** Writes a lock file as a dead holder would have left it. */
async function plantLock(root: string, name: string, expiresAt: number, pid = 999_999): Promise<string> {
  const file = join(root, 'locks', `${name}.lock`);
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, JSON.stringify({ token: 'dead'.repeat(8), pid, hostname: 'gone', expiresAt, name }));
  return file;
}

async function lockToken(root: string, name: string): Promise<string | null> {
  try {
    return (JSON.parse(await readFile(join(root, 'locks', `${name}.lock`), 'utf8')) as { token: string }).token;
  } catch {
    return null;
  }
}

function spawnChild(t: Parameters<typeof tmpDir>[0], args: string[]): ChildProcess & { lines: AsyncIterator<string> } {
  const child = spawn(nodeBin, ['--import', 'tsx', childScript, ...args], {
    cwd: repoRoot,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  return Object.assign(child, { lines });
}

async function expectLine(child: { lines: AsyncIterator<string> }, expected: string): Promise<void> {
  const next = await child.lines.next();
  assert.equal(next.done ? '<eof>' : next.value, expected);
}

function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  }
  return new Promise((done) => child.once('exit', (code, signal) => done({ code, signal })));
}

/** Runs `procs` counter children (all released at once) and returns the final counter. */
async function runCounter(t: Parameters<typeof tmpDir>[0], procs: number, iterations: number, useLock: boolean): Promise<number> {
  const { storage, root } = await newStorage(t);
  // Start from a stale lock left by a dead holder: the children race to take it over.
  await plantLock(root, 'counter', Date.now() - 1_000);
  const children = Array.from({ length: procs }, () =>
    spawnChild(t, ['counter', root, String(iterations), useLock ? 'lock' : 'nolock']),
  );
  await Promise.all(children.map((c) => expectLine(c, 'ready')));
  for (const c of children) c.stdin!.end('go\n');
  await Promise.all(children.map((c) => expectLine(c, 'done')));
  const results = await Promise.all(children.map(exited));
  for (const r of results) assert.deepEqual(r, { code: 0, signal: null });
  return Number((await storage.get('counter'))?.toString());
}

describe('FileStorage: keys and values', () => {
  test('round trip, overwrite, missing get is null', { timeout: 10_000 }, async (t) => {
    const { storage, root } = await newStorage(t);
    assert.equal(storage.description, `file:${root}`);
    assert.equal(await storage.get('certificates/ca/blog.alice.com/cert.pem'), null);
    await storage.put('certificates/ca/blog.alice.com/cert.pem', 'PEM 1');
    assert.deepEqual(await storage.get('certificates/ca/blog.alice.com/cert.pem'), Buffer.from('PEM 1'));
    await storage.put('certificates/ca/blog.alice.com/cert.pem', Buffer.from([0, 1, 2, 255]));
    assert.deepEqual(await storage.get('certificates/ca/blog.alice.com/cert.pem'), Buffer.from([0, 1, 2, 255]));
    // Human-readable layout.
    assert.deepEqual(await readFile(join(root, 'certificates/ca/blog.alice.com/cert.pem')), Buffer.from([0, 1, 2, 255]));
    await storage.put('empty', '');
    assert.deepEqual(await storage.get('empty'), Buffer.alloc(0));
    assert.equal(await storage.get('certificates/ca'), null, 'a directory is not a key');
    assert.equal(await storage.get('empty/below'), null, 'below a file is not a key');
    await storage.close();
  });

  test('delete: missing is fine, empty parents are pruned, never the root', { timeout: 10_000 }, async (t) => {
    const { storage, root } = await newStorage(t);
    await storage.put('a/b/c/one', '1');
    await storage.put('a/two', '2');
    await storage.delete('a/b/c/one');
    assert.equal(await storage.get('a/b/c/one'), null);
    assert.deepEqual(await readdir(join(root, 'a')), ['two']);
    await storage.delete('a/b/c/one');
    await storage.delete('never/existed');
    await storage.delete('a'); // a directory, not a key: nothing happens
    assert.deepEqual(await storage.get('a/two'), Buffer.from('2'));
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

  test('list: recursive, sorted, prefix forms, no temp or lock files', { timeout: 10_000 }, async (t) => {
    const { storage, root } = await newStorage(t);
    const keys = LIST_FIXTURE_KEYS;
    for (const key of keys) await storage.put(key, key);
    // A crashed writer's temp file, a lock and its leftovers must not show up.
    await writeFile(join(root, 'certificates/ca/alpha.com/.cert.pem.0123456789abcdef.tmp'), 'partial');
    const lock = await storage.tryLock('issue/alpha.com', { ttlMs: 10_000 });
    assert.ok(lock);
    await writeFile(join(root, 'locks/issue/.alpha.com.lock.fedcba9876543210.stale'), 'x');

    await assertListPrefixForms(storage);
    // Everything (but locks).
    assert.deepEqual(await storage.list(''), [...keys].sort());
    assert.deepEqual(await storage.list('l'), []);
    assert.deepEqual(await storage.list('nothing/here/'), []);
    // Locks only when asked for explicitly.
    assert.deepEqual(await storage.list('locks/'), ['locks/issue/alpha.com.lock']);
    assert.deepEqual(await storage.list('locks'), ['locks/issue/alpha.com.lock']);
    await lock.release();
    assert.deepEqual(await storage.list('locks/'), []);
    // The old value survived the "crash".
    assert.deepEqual(await storage.get('certificates/ca/alpha.com/cert.pem'), Buffer.from('certificates/ca/alpha.com/cert.pem'));
  });

  test('invalid keys, prefixes and lock names are rejected', { timeout: 10_000 }, async (t) => {
    const { storage } = await newStorage(t);
    const bad = ['../x', '/abs', 'a//b', '', 'a/', 'a/./b', 'a/../b', '..', 'a\\b', 'a\0b', 'x'.repeat(1025)];
    for (const key of bad) {
      await rejectsWith(storage.get(key), 'validate-key');
      await rejectsWith(storage.put(key, 'v'), 'validate-key');
      await rejectsWith(storage.delete(key), 'validate-key');
      await rejectsWith(storage.tryLock(key, { ttlMs: 1000 }), 'validate-key');
      await rejectsWith(storage.lock(key, { ttlMs: 1000 }), 'validate-key');
    }
    for (const prefix of ['../', '/', '/abs', '/abs/', 'a//', 'a/../b/', '../x', 'a\\b']) {
      await rejectsWith(storage.list(prefix), 'validate-key');
    }
    // Names of internal files, and the reserved locks/ tree.
    await rejectsWith(storage.put('a/.b.0123456789abcdef.tmp', 'v'), 'validate-key');
    await rejectsWith(storage.put('locks/x.lock', 'v'), 'validate-key', /reserved/);
    await rejectsWith(storage.put('locks', 'v'), 'validate-key');
    await rejectsWith(storage.delete('locks/x.lock'), 'validate-key');
    await rejectsWith(storage.tryLock('a.lock/b', { ttlMs: 1000 }), 'validate-key');
    await rejectsWith(storage.tryLock('ok', { ttlMs: 0 }), 'lock');
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
    const { storage } = await newStorage(t);
    const size = 4 * 1024 * 1024;
    await storage.put('big', Buffer.alloc(size, 0));
    const child = spawnChild(t, ['write', (storage.description.slice('file:'.length)), 'big', String(size)]);
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

describe('FileStorage: locks in one process', () => {
  test('tryLock excludes, release frees, release twice is fine', { timeout: 10_000 }, async (t) => {
    const { storage, root } = await newStorage(t);
    const other = new FileStorage(root);
    const lock = await storage.tryLock('issue/blog.alice.com', { ttlMs: 10_000 });
    assert.ok(lock);
    assert.equal(lock.name, 'issue/blog.alice.com');
    assert.equal(await storage.tryLock('issue/blog.alice.com', { ttlMs: 10_000 }), null);
    assert.equal(await other.tryLock('issue/blog.alice.com', { ttlMs: 10_000 }), null);
    const record = JSON.parse(await readFile(join(root, 'locks/issue/blog.alice.com.lock'), 'utf8')) as Record<string, unknown>;
    assert.equal(record.pid, process.pid);
    assert.equal(record.hostname, hostname());
    assert.equal(typeof record.token, 'string');
    assert.ok(typeof record.expiresAt === 'number' && record.expiresAt > Date.now());
    // Other names are independent.
    const sibling = await other.tryLock('issue/blog.bob.com', { ttlMs: 10_000 });
    assert.ok(sibling);
    await lock.release();
    await lock.release();
    await rejectsWith(lock.refresh(), 'refresh');
    const again = await other.tryLock('issue/blog.alice.com', { ttlMs: 10_000 });
    assert.ok(again);
    await lock.release(); // still must not remove the new holder's file
    assert.equal(await storage.tryLock('issue/blog.alice.com', { ttlMs: 10_000 }), null);
    await Promise.all([again.release(), again.release(), sibling.release()]);
    assert.deepEqual(await storage.list('locks/'), []);
  });

  test('refresh extends the expiry', { timeout: 10_000 }, async (t) => {
    const { storage, root } = await newStorage(t);
    const lock = await storage.tryLock('renew', { ttlMs: 500 });
    assert.ok(lock);
    const read = async () =>
      (JSON.parse(await readFile(join(root, 'locks/renew.lock'), 'utf8')) as { expiresAt: number }).expiresAt;
    const before = await read();
    for (let i = 0; i < 5; i++) {
      await sleep(150);
      await lock.refresh();
      assert.equal(await storage.tryLock('renew', { ttlMs: 500 }), null, `taken over after refresh ${i}`);
    }
    // Held for 750+ ms with a 500 ms ttl.
    assert.ok((await read()) >= before + 700);
    assert.deepEqual(await storage.list('locks/'), ['locks/renew.lock'], 'no temp files from refresh');
    await lock.release();
  });

  test('an expired lock is taken over; the old holder loses it', { timeout: 10_000 }, async (t) => {
    const { storage, root } = await newStorage(t);
    const old = await storage.tryLock('issue/x.com', { ttlMs: 300 });
    assert.ok(old);
    assert.equal(await storage.tryLock('issue/x.com', { ttlMs: 300 }), null);
    await sleep(350);
    const taker = await storage.tryLock('issue/x.com', { ttlMs: 10_000 });
    assert.ok(taker, 'expired lock was not taken over');
    const takerToken = await lockToken(root, 'issue/x.com');
    await rejectsWith(old.refresh(), 'refresh', /lock lost/);
    await old.release();
    assert.equal(await lockToken(root, 'issue/x.com'), takerToken, "old holder's release removed the new holder's file");
    await taker.refresh();
    await taker.release();
    assert.equal(await lockToken(root, 'issue/x.com'), null);
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

  test('lock() waits for the holder, then times out naming the lock and holder', { timeout: 10_000 }, async (t) => {
    const { storage, root } = await newStorage(t);
    const other = new FileStorage(root);
    const held = await storage.lock('issue/wait.com', { ttlMs: 5_000 });
    const started = Date.now();
    setTimeout(() => void held.release(), 200);
    const waited = await other.lock('issue/wait.com', { ttlMs: 5_000, pollMs: 20 });
    assert.ok(Date.now() - started >= 150);
    const err = await rejectsWith(storage.lock('issue/wait.com', { ttlMs: 5_000, waitMs: 150, pollMs: 20 }), 'lock');
    assert.equal(err.key, 'issue/wait.com');
    assert.match(err.message, /issue\/wait\.com/);
    assert.match(err.message, new RegExp(`pid ${process.pid}`));
    // Default waitMs = 2 * ttlMs: a short ttl holder that never refreshes is taken over in time.
    const short = await storage.lock('short', { ttlMs: 100 });
    const next = await other.lock('short', { ttlMs: 100, pollMs: 10 });
    await rejectsWith(short.refresh(), 'refresh', /lock lost/);
    await Promise.all([waited.release(), next.release(), short.release()]);
  });
});

describe('FileStorage: locks across processes', () => {
  test('a counter incremented under the lock by several processes loses no update', { timeout: 25_000 }, async (t) => {
    const procs = 4;
    const iterations = 12;
    assert.equal(await runCounter(t, procs, iterations, true), procs * iterations);
  });

  test('control: without the lock the same workload loses updates', { timeout: 25_000 }, async (t) => {
    const procs = 4;
    const iterations = 12;
    assert.ok((await runCounter(t, procs, iterations, false)) < procs * iterations);
  });

  test('a lock whose holder was killed is taken over after the ttl', { timeout: 20_000 }, async (t) => {
    const { storage, root } = await newStorage(t);
    const child = spawnChild(t, ['hold', root, 'issue/killed.com', '1500']);
    await expectLine(child, 'locked');
    const held = JSON.parse(await readFile(join(root, 'locks/issue/killed.com.lock'), 'utf8')) as {
      pid: number;
      expiresAt: number;
    };
    assert.equal(held.pid, child.pid);
    assert.equal(await storage.tryLock('issue/killed.com', { ttlMs: 1500 }), null);
    child.kill('SIGKILL');
    await exited(child);
    const lock = await storage.lock('issue/killed.com', { ttlMs: 1500, waitMs: 8_000, pollMs: 20 });
    assert.ok(Date.now() >= held.expiresAt, 'taken over before the ttl');
    const now = JSON.parse(await readFile(join(root, 'locks/issue/killed.com.lock'), 'utf8')) as { pid: number };
    assert.equal(now.pid, process.pid);
    await lock.release();
  });
});
