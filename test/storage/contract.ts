// The storage contract: what every Storage backend must do alike (src/storage/storage.ts). Each
// backend's test file runs it (file.test.ts, redis.test.ts) and keeps only what is its own
// (file modes and atomic renames; Redis' key space, reconnects, Sentinel and Cluster).
//
// Lock leases are time-based, but these cases assert no wall-clock bound that load could break:
// expiries are bracketed by clock readings taken before and after the call, waits only ever
// wait *longer* than a lease (never "at most"), and a waiter that must not be woken by its poll
// gets a poll interval far beyond the test's time limit.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { hostname } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

import { StorageError, type Storage } from '../../src/storage/storage.ts';
import type { ChildStorageSpec } from './storage-child.ts';

export interface StorageBackend {
  /** A fresh, empty storage; closed (and its data removed) when the test ends. */
  open(t: TestContext): Promise<Storage>;
  /** A second instance on the same data as `storage`, as another process would open it. */
  openSibling(t: TestContext, storage: Storage): Promise<Storage>;
  /** How a child process (storage-child.ts) opens the same data as `storage`. */
  childSpec(storage: Storage): ChildStorageSpec;
  /**
   * When the held lock `name` expires (ms since the epoch), read the backend's own way, as bounds
   * the true expiry lies between: a backend that keeps a relative TTL (Redis PTTL) brackets it
   * with clock readings taken before and after the read; one that stores the time gives it twice.
   */
  lockExpiresAt(storage: Storage, name: string): Promise<{ earliest: number; latest: number }>;
  /**
   * Leaves `name` locked by a dead holder whose lease ran out, for backends that keep such a lock
   * until someone takes it over (lock files). Absent where an expired lock simply vanishes (Redis).
   */
  plantExpiredLock?(storage: Storage, name: string): Promise<void>;
}

// -------------------------------------------------------------------------------------------------
// Helpers shared with the backends' own tests

export async function rejectsWith(promise: Promise<unknown>, step: string, message?: RegExp): Promise<StorageError> {
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

/** The holder record a lock's key reads back as (both backends store JSON with these fields). */
export async function lockHolder(storage: Storage, name: string): Promise<{ token: string; pid: number; hostname: string } | null> {
  const raw = await storage.get(`locks/${name}.lock`);
  return raw === null ? null : (JSON.parse(raw.toString('utf8')) as { token: string; pid: number; hostname: string });
}

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, '../..');
const nodeBin = join(repoRoot, 'node_modules/.bin/node');
const childScript = join(here, 'storage-child.ts');

export type Child = ChildProcess & { lines: AsyncIterator<string> };

/** Runs storage-child.ts `mode` on the storage `spec` describes; killed when the test ends. */
export function spawnChild(t: TestContext, mode: string, spec: ChildStorageSpec, args: string[]): Child {
  const child = spawn(nodeBin, ['--import', 'tsx', childScript, mode, JSON.stringify(spec), ...args], {
    cwd: repoRoot,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  return Object.assign(child, { lines });
}

export async function expectLine(child: { lines: AsyncIterator<string> }, expected: string): Promise<void> {
  const next = await child.lines.next();
  assert.equal(next.done ? '<eof>' : next.value, expected);
}

export function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  }
  return new Promise((done) => child.once('exit', (code, signal) => done({ code, signal })));
}

// -------------------------------------------------------------------------------------------------
// The list fixture: keys and prefix forms every backend must list alike

export const LIST_FIXTURE_KEYS = [
  'certificates/ca/zeta.com/cert.pem',
  'certificates/ca/alpha.com/key.pem',
  'certificates/ca/alpha.com/cert.pem',
  'certificates/ca2/abcd.com/cert.pem',
  'certificates/abc',
  'certificates-old/x',
  'accounts/ca/account.json',
];

const CERTIFICATES = [
  'certificates/abc',
  'certificates/ca/alpha.com/cert.pem',
  'certificates/ca/alpha.com/key.pem',
  'certificates/ca/zeta.com/cert.pem',
  'certificates/ca2/abcd.com/cert.pem',
];

/** With LIST_FIXTURE_KEYS stored: directory, plain-string and mid-name prefixes, and misses. */
async function assertListPrefixForms(storage: Storage): Promise<void> {
  assert.deepEqual(await storage.list('certificates/'), CERTIFICATES);
  // Plain string prefix: without the slash, siblings sharing the name match too.
  assert.deepEqual(await storage.list('certificates'), [...CERTIFICATES, 'certificates-old/x'].sort());
  assert.deepEqual(await storage.list('certificates/ca/alpha.com/'), CERTIFICATES.slice(1, 3));
  assert.deepEqual(await storage.list('certificates/ca/alpha.com'), CERTIFICATES.slice(1, 3));
  // Mid-name prefixes.
  assert.deepEqual(await storage.list('certificates/ab'), ['certificates/abc']);
  assert.deepEqual(await storage.list('certificates/ca2/ab'), ['certificates/ca2/abcd.com/cert.pem']);
  assert.deepEqual(await storage.list('certificates/ca/alpha.com/k'), ['certificates/ca/alpha.com/key.pem']);
  assert.deepEqual(await storage.list('certificates/ca/alpha.com/cert.pem'), ['certificates/ca/alpha.com/cert.pem']);
  // Missing prefixes.
  assert.deepEqual(await storage.list('nothing/'), []);
  assert.deepEqual(await storage.list('certificates/abc/'), [], 'below a key');
}

async function pageThrough(storage: Storage, prefix: string, limit: number): Promise<{ keys: string[]; pages: number }> {
  const keys: string[] = [];
  let cursor: string | undefined;
  let pages = 0;
  for (;;) {
    const page = await storage.list(prefix, { ...(cursor === undefined ? {} : { after: cursor }), limit });
    pages++;
    assert.ok(page.length <= limit, `page of ${page.length} > limit ${limit}`);
    keys.push(...page);
    if (page.length < limit) return { keys, pages };
    cursor = page[page.length - 1];
  }
}

/** Tolerance for clocks that count whole milliseconds (Redis' and Date.now()), not for load. */
const CLOCK_MS = 2;

/** Sleeps until the lock `name` has expired (by the backend's own record of its expiry). */
async function outlive(backend: StorageBackend, storage: Storage, name: string): Promise<void> {
  const { latest } = await backend.lockExpiresAt(storage, name);
  await sleep(Math.max(0, latest - Date.now()) + 50);
}

// -------------------------------------------------------------------------------------------------

export function describeStorageContract(name: string, backend: StorageBackend): void {
  describe(`${name}: contract: keys and values`, () => {
    test('round trip, overwrite, empty values; a missing key, a "directory" and a path below a key read as null', { timeout: 10_000 }, async (t) => {
      const storage = await backend.open(t);
      const key = 'certificates/acme-v02.api.letsencrypt.org-directory/blog.alice.com/cert.pem';
      assert.equal(await storage.get(key), null);
      await storage.put(key, 'PEM 1');
      const got = await storage.get(key);
      assert.ok(Buffer.isBuffer(got));
      assert.deepEqual(got, Buffer.from('PEM 1'));
      await storage.put(key, Buffer.from([0, 1, 2, 255]));
      assert.deepEqual(await storage.get(key), Buffer.from([0, 1, 2, 255]));
      await storage.put('empty', '');
      assert.deepEqual(await storage.get('empty'), Buffer.alloc(0));
      assert.equal(await storage.get('certificates/acme-v02.api.letsencrypt.org-directory'), null, 'a "directory" is not a key');
      assert.equal(await storage.get('empty/below'), null, 'below a key is not a key');
    });

    test('values are binary-safe', { timeout: 10_000 }, async (t) => {
      const storage = await backend.open(t);
      const every = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
      await storage.put('bin/every-byte', every);
      assert.deepEqual(await storage.get('bin/every-byte'), every);
      const big = Buffer.from(Array.from({ length: 1024 * 1024 }, (_, i) => (i * 7919) % 256));
      await storage.put('bin/big', big);
      assert.deepEqual(await storage.get('bin/big'), big);
      const text = 'ünïcødé ✓ \u{1F512}\r\n\0end';
      await storage.put('bin/text', text);
      assert.equal((await storage.get('bin/text'))?.toString('utf8'), text);
    });

    test('delete: a missing key or a "directory" is fine; list follows', { timeout: 10_000 }, async (t) => {
      const storage = await backend.open(t);
      await storage.put('a/b/c/one', '1');
      await storage.put('a/two', '2', { private: true });
      await storage.delete('a/b/c/one');
      assert.equal(await storage.get('a/b/c/one'), null);
      assert.deepEqual(await storage.list(''), ['a/two']);
      await storage.delete('a/b/c/one');
      await storage.delete('never/existed');
      await storage.delete('a'); // a "directory", not a key: nothing happens
      assert.deepEqual(await storage.get('a/two'), Buffer.from('2'));
      await storage.delete('a/two');
      assert.equal(await storage.get('a/two'), null);
      assert.deepEqual(await storage.list(''), []);
    });

    test('concurrent puts and deletes of the same keys from two instances keep list and get in step', { timeout: 15_000 }, async (t) => {
      const storage = await backend.open(t);
      const other = await backend.openSibling(t, storage);
      const keys = Array.from({ length: 10 }, (_, i) => `race/k${i}`);
      const ops: Promise<void>[] = [];
      for (let round = 0; round < 60; round++) {
        for (const key of keys) {
          const s = round % 2 === 0 ? storage : other;
          ops.push(Math.random() < 0.5 ? s.put(key, `v${round}`) : s.delete(key));
        }
      }
      await Promise.all(ops);
      const listed = await storage.list('race/');
      const present = [];
      for (const key of keys) if ((await storage.get(key)) !== null) present.push(key);
      assert.deepEqual(listed, present.sort());
    });

    test('putMany: every value put, a bad key anywhere writes none, and a reader sees them in the given order', { timeout: 20_000 }, async (t) => {
      const storage = await backend.open(t);
      const putMany = storage.putMany?.bind(storage);
      assert.ok(putMany, 'the backend implements putMany');
      await putMany([]);
      await putMany([
        { key: 'bundle/d0/key.pem', value: 'k0', opts: { private: true } },
        { key: 'bundle/d0/cert.pem', value: Buffer.from('c0') },
        { key: 'index/h0/d0', value: 'i0' },
      ]);
      assert.deepEqual(await storage.list(''), ['bundle/d0/cert.pem', 'bundle/d0/key.pem', 'index/h0/d0']);
      assert.equal((await storage.get('bundle/d0/key.pem'))?.toString(), 'k0');
      await rejectsWith(putMany([{ key: 'bad/first', value: 'x' }, { key: '../x', value: 'y' }]), 'validate-key');
      assert.equal(await storage.get('bad/first'), null, 'nothing written when a later key is refused');
      // Replaced over and over while another instance reads the later value first: the earlier
      // one it then reads is never older (a chain is never seen without its key).
      const other = await backend.openSibling(t, storage);
      let writing = true;
      const writer = (async () => {
        for (let i = 1; i <= 120; i++) await putMany([{ key: 'pair/key', value: String(i) }, { key: 'pair/meta', value: String(i) }, { key: 'pair/cert', value: String(i) }]);
      })().finally(() => (writing = false));
      let checks = 0;
      while (writing) {
        const cert = Number((await other.get('pair/cert'))?.toString() ?? 0);
        const key = Number((await other.get('pair/key'))?.toString() ?? 0);
        assert.ok(key >= cert, `read cert ${cert}, then the older key ${key}`);
        checks++;
      }
      await writer;
      assert.ok(checks > 5, `only ${checks} reads happened`);
      assert.deepEqual(await storage.list('pair/'), ['pair/cert', 'pair/key', 'pair/meta']);
    });

    test('invalid keys, prefixes and lock names are rejected; locks/ is reserved', { timeout: 10_000 }, async (t) => {
      const storage = await backend.open(t);
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
      // The same names on every backend, so data can move between them: the file backend's
      // internal file names, and the reserved locks/ tree.
      await rejectsWith(storage.put('a/.b.0123456789abcdef.tmp', 'v'), 'validate-key');
      await rejectsWith(storage.put('locks/x.lock', 'v'), 'validate-key', /reserved/);
      await rejectsWith(storage.put('locks', 'v'), 'validate-key', /reserved/);
      await rejectsWith(storage.delete('locks/x.lock'), 'validate-key', /reserved/);
      await rejectsWith(storage.tryLock('a.lock/b', { ttlMs: 1000 }), 'validate-key');
      await rejectsWith(storage.tryLock('ok', { ttlMs: 0 }), 'lock');
      await rejectsWith(storage.lock('ok', { ttlMs: 1000, pollMs: -1 }), 'lock');
      await assert.rejects(storage.list('registry/', { limit: -1 }), StorageError);
      await assert.rejects(storage.list('registry/', { limit: 1.5 }), StorageError);
    });
  });

  describe(`${name}: contract: list`, () => {
    test('list: sorted, prefix forms, locks only when asked for, and readable', { timeout: 10_000 }, async (t) => {
      const storage = await backend.open(t);
      const keys = [...LIST_FIXTURE_KEYS, 'locksmith/x'];
      for (const key of keys) await storage.put(key, key);
      const lock = await storage.tryLock('issue/alpha.com', { ttlMs: 10_000 });
      assert.ok(lock);

      await assertListPrefixForms(storage);
      assert.deepEqual(await storage.list(''), [...keys].sort());
      assert.deepEqual(await storage.list('l'), ['locksmith/x']);
      // Locks only when asked for explicitly (and get() can read who holds one).
      assert.deepEqual(await storage.list('locks/'), ['locks/issue/alpha.com.lock']);
      assert.deepEqual(await storage.list('locks'), ['locks/issue/alpha.com.lock', 'locksmith/x']);
      assert.deepEqual(await storage.list('locks/issue/al'), ['locks/issue/alpha.com.lock']);
      assert.equal((await lockHolder(storage, 'issue/alpha.com'))?.pid, process.pid);
      await lock.release();
      assert.deepEqual(await storage.list('locks/'), []);
    });

    test('list: glob and regex characters are literal; non-ASCII keys sort as JavaScript strings', { timeout: 10_000 }, async (t) => {
      const storage = await backend.open(t);
      const globby = ['g/a*b/x', 'g/a?b/y', 'g/a[b]/z', 'g/aXb/w', 'g/a^b/v', 'g/a{b}/u', 'g/ab/t'];
      for (const key of globby) await storage.put(key, key);
      assert.deepEqual(await storage.list('g/a*'), ['g/a*b/x']);
      assert.deepEqual(await storage.list('g/a?'), ['g/a?b/y']);
      assert.deepEqual(await storage.list('g/a['), ['g/a[b]/z']);
      assert.deepEqual(await storage.list('g/a[b]/'), ['g/a[b]/z']);
      assert.deepEqual(await storage.list('g/a{'), ['g/a{b}/u']);
      assert.deepEqual(await storage.list('g/'), [...globby].sort());
      const globLocks = await Promise.all(['g*/x', 'g?/y', 'g[1]/z', 'gg/w'].map((n) => storage.tryLock(n, { ttlMs: 10_000 })));
      assert.deepEqual(await storage.list('locks/g*'), ['locks/g*/x.lock']);
      assert.deepEqual(await storage.list('locks/g['), ['locks/g[1]/z.lock']);
      assert.equal((await storage.list('locks/g')).length, 4);
      await Promise.all(globLocks.map((l) => l?.release()));

      const intl = ['u/zz', 'u/\u00e9', 'u/\uff21', 'u/\u{1F600}', 'u/a'];
      for (const key of intl) await storage.put(key, 'x');
      assert.deepEqual(await storage.list('u/'), [...intl].sort());
      assert.deepEqual(await storage.list('u/\u00e9'), ['u/\u00e9']);
    });

    test('list: after/limit pages through every key once, in order; a cursor outside the range is harmless', { timeout: 60_000 }, async (t) => {
      const storage = await backend.open(t);
      const names = Array.from({ length: 250 }, (_, i) => `registry/domains/d${String(i).padStart(4, '0')}.example`);
      await Promise.all(names.map((k) => storage.put(k, '{}')));
      await storage.put('registry/other', 'x');
      await storage.put('registry/domainsX/y', 'x');
      await storage.put('aaa/before', 'x');

      assert.deepEqual(await storage.list('registry/domains/'), names);
      for (const limit of [1, 7, 100, 250, 1000]) {
        const { keys, pages } = await pageThrough(storage, 'registry/domains/', limit);
        assert.deepEqual(keys, names, `limit ${limit}: every key once, in order`);
        assert.equal(pages, Math.floor(250 / limit) + 1);
      }
      assert.deepEqual(await storage.list('registry/domains/', { limit: 0 }), []);
      assert.deepEqual(await storage.list('registry/domains/', { after: 'a' }), names, 'cursor before the range');
      assert.deepEqual(await storage.list('registry/domains/', { after: 'zzz' }), [], 'cursor after the range');
      assert.deepEqual(await storage.list('registry/domains/', { after: names[248]! }), [names[249]]);
      assert.deepEqual(await storage.list('registry/domains/', { after: 'registry/domains/d0100', limit: 2 }), [names[100], names[101]], 'cursor that is not a key');
    });
  });

  describe(`${name}: contract: locks`, () => {
    test('tryLock excludes, release frees, release twice is fine, a stale release is harmless', { timeout: 10_000 }, async (t) => {
      const storage = await backend.open(t);
      const other = await backend.openSibling(t, storage);
      const before = Date.now();
      const lock = await storage.tryLock('issue/blog.alice.com', { ttlMs: 10_000 });
      const after = Date.now();
      assert.ok(lock);
      assert.equal(lock.name, 'issue/blog.alice.com');
      assert.equal(await storage.tryLock('issue/blog.alice.com', { ttlMs: 10_000 }), null);
      assert.equal(await other.tryLock('issue/blog.alice.com', { ttlMs: 10_000 }), null);
      // Who holds it, and until when: ttlMs from the moment it was taken.
      const holder = await lockHolder(storage, 'issue/blog.alice.com');
      assert.equal(holder?.pid, process.pid);
      assert.equal(holder?.hostname, hostname());
      assert.equal(typeof holder?.token, 'string');
      // Both brackets (the call's and the read's) hold the true expiry, so they overlap however
      // slow the machine; CLOCK_MS only covers whole-millisecond clocks.
      const expiry = await backend.lockExpiresAt(storage, 'issue/blog.alice.com');
      assert.ok(expiry.latest >= before + 10_000 - CLOCK_MS && expiry.earliest <= after + 10_000 + CLOCK_MS, `expires ${expiry.earliest - before}..${expiry.latest - before} ms after the call began`);
      // Other names are independent.
      const sibling = await other.tryLock('issue/blog.bob.com', { ttlMs: 10_000 });
      assert.ok(sibling);
      await lock.release();
      await lock.release();
      await rejectsWith(lock.refresh(), 'refresh', /released/);
      const again = await other.tryLock('issue/blog.alice.com', { ttlMs: 10_000 });
      assert.ok(again);
      await lock.release(); // still must not remove the new holder's lock
      assert.equal(await storage.tryLock('issue/blog.alice.com', { ttlMs: 10_000 }), null);
      await Promise.all([again.release(), again.release(), sibling.release()]);
      assert.deepEqual(await storage.list('locks/'), []);
    });

    test('refresh moves the expiry to ttlMs from now', { timeout: 10_000 }, async (t) => {
      const storage = await backend.open(t);
      const lock = await storage.tryLock('renew', { ttlMs: 60_000 });
      assert.ok(lock);
      const first = await backend.lockExpiresAt(storage, 'renew');
      for (let i = 0; i < 3; i++) {
        await sleep(100);
        const before = Date.now();
        await lock.refresh();
        const after = Date.now();
        const expiry = await backend.lockExpiresAt(storage, 'renew');
        assert.ok(expiry.latest >= before + 60_000 - CLOCK_MS && expiry.earliest <= after + 60_000 + CLOCK_MS, `refresh ${i}: expires ${expiry.earliest - before}..${expiry.latest - before} ms after the call began`);
        assert.equal(await storage.tryLock('renew', { ttlMs: 60_000 }), null, `taken over after refresh ${i}`);
      }
      // A loaded machine only sleeps longer (moves it further); the slack is for timers firing early.
      assert.ok((await backend.lockExpiresAt(storage, 'renew')).latest >= first.earliest + 300 - 15, 'three refreshes 100+ ms apart moved the expiry on');
      await lock.release();
    });

    test('an expired lock is taken over; the old holder loses it and cannot release the new one', { timeout: 10_000 }, async (t) => {
      const storage = await backend.open(t);
      const old = await storage.tryLock('issue/x.com', { ttlMs: 300 });
      assert.ok(old);
      await outlive(backend, storage, 'issue/x.com');
      const taker = await storage.tryLock('issue/x.com', { ttlMs: 10_000 });
      assert.ok(taker, 'expired lock was not taken over');
      const takerToken = (await lockHolder(storage, 'issue/x.com'))?.token;
      const err = await rejectsWith(old.refresh(), 'refresh', /lock lost/);
      assert.match(err.message, new RegExp(`pid ${process.pid}`));
      await old.release();
      assert.equal((await lockHolder(storage, 'issue/x.com'))?.token, takerToken, "old holder's release removed the new holder's lock");
      await taker.refresh();
      await taker.release();
      assert.equal(await lockHolder(storage, 'issue/x.com'), null);
    });

    test('lock() waits for the holder to release', { timeout: 10_000 }, async (t) => {
      const storage = await backend.open(t);
      const other = await backend.openSibling(t, storage);
      const held = await storage.lock('issue/wait.com', { ttlMs: 60_000 });
      let released = false;
      setTimeout(() => {
        released = true;
        void held.release();
      }, 200);
      const waited = await other.lock('issue/wait.com', { ttlMs: 60_000, waitMs: 60_000, pollMs: 20 });
      assert.equal(released, true, 'acquired while the holder still held it');
      assert.equal((await lockHolder(storage, 'issue/wait.com'))?.pid, process.pid);
      await waited.release();
    });

    test('lock() gives up after waitMs naming the lock and its holder; default waitMs is 2 x ttl', { timeout: 10_000 }, async (t) => {
      const storage = await backend.open(t);
      const other = await backend.openSibling(t, storage);
      const held = await storage.lock('issue/wait.com', { ttlMs: 60_000 });
      // A poll far beyond the test's time limit: only the waitMs deadline can end the wait.
      const started = Date.now();
      const err = await rejectsWith(other.lock('issue/wait.com', { ttlMs: 60_000, waitMs: 300, pollMs: 600_000 }), 'lock');
      assert.ok(Date.now() - started >= 300 - 10, 'gave up before waitMs');
      assert.equal(err.key, 'issue/wait.com');
      assert.match(err.message, /timed out after 300 ms/);
      assert.match(err.message, /issue\/wait\.com/);
      assert.match(err.message, new RegExp(`held by pid ${process.pid}\\b`));
      // Without waitMs, lock() waits twice the ttl it asks for.
      await rejectsWith(other.lock('issue/wait.com', { ttlMs: 150 }), 'lock', /timed out after 300 ms/);
      await held.release();
    });

    test('lock() takes over from a holder that stopped refreshing', { timeout: 10_000 }, async (t) => {
      const storage = await backend.open(t);
      const other = await backend.openSibling(t, storage);
      const stale = await storage.lock('short', { ttlMs: 200 });
      const next = await other.lock('short', { ttlMs: 200, waitMs: 30_000, pollMs: 20 });
      await rejectsWith(stale.refresh(), 'refresh', /lock lost/);
      await Promise.all([next.release(), stale.release()]);
      assert.deepEqual(await storage.list('locks/'), []);
    });
  });

  describe(`${name}: contract: locks across processes`, () => {
    /** `procs` children (released at once) each add 1 to a counter `iterations` times. */
    async function runCounter(t: TestContext, procs: number, iterations: number, useLock: boolean): Promise<{ storage: Storage; count: number }> {
      const storage = await backend.open(t);
      // Where expired locks linger, start from one left by a dead holder: the children race to take it over.
      await backend.plantExpiredLock?.(storage, 'counter');
      const children = Array.from({ length: procs }, () =>
        spawnChild(t, 'counter', backend.childSpec(storage), [String(iterations), useLock ? 'lock' : 'nolock']),
      );
      await Promise.all(children.map((c) => expectLine(c, 'ready')));
      for (const c of children) c.stdin!.end('go\n');
      await Promise.all(children.map((c) => expectLine(c, 'done')));
      for (const r of await Promise.all(children.map(exited))) assert.deepEqual(r, { code: 0, signal: null });
      return { storage, count: Number((await storage.get('counter'))?.toString()) };
    }

    test('a counter incremented under the lock by several processes loses no update', { timeout: 60_000 }, async (t) => {
      const { storage, count } = await runCounter(t, 4, 15, true);
      assert.equal(count, 4 * 15);
      assert.deepEqual(await storage.list('locks/'), []);
    });

    test('control: without the lock the same workload loses updates', { timeout: 60_000 }, async (t) => {
      // Without this, the test above could not fail: the workload must really race.
      const { count } = await runCounter(t, 4, 15, false);
      assert.ok(count < 4 * 15, `the control lost no update (${count}): the workload does not race`);
    });

    test('a lock whose holder process was killed is taken over once its lease runs out', { timeout: 60_000 }, async (t) => {
      const storage = await backend.open(t);
      const child = spawnChild(t, 'hold', backend.childSpec(storage), ['issue/killed.com', '3000']);
      await expectLine(child, 'locked');
      assert.equal((await lockHolder(storage, 'issue/killed.com'))?.pid, child.pid);
      assert.equal(await storage.tryLock('issue/killed.com', { ttlMs: 3000 }), null, 'a live holder keeps its lock');
      child.kill('SIGKILL');
      await exited(child);
      // The lease's end is no earlier than `earliest`; a slow machine only makes the read (and so
      // `earliest`) earlier or the take-over later, never the other way round.
      const lastExpiry = await backend.lockExpiresAt(storage, 'issue/killed.com');
      const lock = await storage.lock('issue/killed.com', { ttlMs: 3000, waitMs: 30_000, pollMs: 20 });
      assert.ok(Date.now() >= lastExpiry.earliest - CLOCK_MS, `taken over ${lastExpiry.earliest - Date.now()} ms before the lease ran out`);
      assert.equal((await lockHolder(storage, 'issue/killed.com'))?.pid, process.pid);
      await lock.release();
    });
  });
}
