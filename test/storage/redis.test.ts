import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

import { pino } from 'pino';
import { createClient } from 'redis';

import { silentLogger, type Logger } from '../../src/log.ts';
import { LocalBus } from '../../src/storage/bus.ts';
import { hasHashTag, RedisStorage, resolveRedisOptions, type RedisStorageOptions } from '../../src/storage/redis.ts';
import { StorageError } from '../../src/storage/storage.ts';
import { freePort } from '../support/ports.ts';
import { startRedis, startRedisCluster, startSentinel, type RedisHandle } from '../support/redis.ts';
import { assertListPrefixForms, LIST_FIXTURE_KEYS } from './list-fixture.ts';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, '../..');
const nodeBin = join(repoRoot, 'node_modules/.bin/node');
const childScript = join(repoRoot, 'test/support/redis.ts');

let server: RedisHandle;
let raw: ReturnType<typeof createClient>;
let prefixCounter = 0;

before(async () => {
  server = await startRedis();
  raw = createClient({ url: server.url });
  raw.on('error', () => {});
  await raw.connect();
});

after(async () => {
  await raw.close();
  await server.dispose();
});

/** A fresh key namespace per test, so tests sharing the server never see each other's keys. */
function newPrefix(): string {
  return `t${++prefixCounter}-${randomBytes(3).toString('hex')}:`;
}

async function open(t: TestContext, opts: Partial<RedisStorageOptions> = {}): Promise<RedisStorage> {
  const storage = await RedisStorage.connect({ url: server.url, prefix: newPrefix(), logger: silentLogger(), ...opts });
  t.after(() => storage.close());
  return storage;
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

/** A logger that keeps its JSON lines, for asserting what was logged. */
function captureLogger(): { logger: Logger; entries: () => Array<{ level: number; msg: string }> } {
  const lines: string[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => void lines.push(line) });
  return { logger, entries: () => lines.map((l) => JSON.parse(l) as { level: number; msg: string }) };
}

/** Resolves with the next message on `channel` of `storage`'s bus, or rejects after `ms`. */
function nextMessage(storage: RedisStorage, channel: string, ms = 1_000): { received: Promise<string>; ready: Promise<() => Promise<void>> } {
  let resolveMessage!: (m: string) => void;
  const received = new Promise<string>((resolvePromise, reject) => {
    resolveMessage = resolvePromise;
    setTimeout(() => reject(new Error(`no message on ${channel} within ${ms} ms`)), ms).unref();
  });
  const ready = storage.subscribe(channel, (m) => resolveMessage(m));
  return { received, ready };
}

async function until(what: string, fn: () => Promise<boolean>, timeoutMs: number, intervalMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await fn()) return;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

describe('RedisStorage: keys and values', () => {
  test('round trip, overwrite, missing get is null, readable key space', { timeout: 10_000 }, async (t) => {
    const prefix = newPrefix();
    const storage = await open(t, { prefix });
    assert.equal(storage.description, `redis:127.0.0.1:${server.port}/${prefix}`);
    const key = 'certificates/acme-v02.api.letsencrypt.org-directory/blog.alice.com/cert.pem';
    assert.equal(await storage.get(key), null);
    await storage.put(key, 'PEM 1');
    const got = await storage.get(key);
    assert.ok(Buffer.isBuffer(got));
    assert.deepEqual(got, Buffer.from('PEM 1'));
    await storage.put(key, Buffer.from([0, 1, 2, 255]));
    assert.deepEqual(await storage.get(key), Buffer.from([0, 1, 2, 255]));
    // Human-readable layout: <prefix><key>, plus the index.
    assert.deepEqual(await raw.withTypeMapping({ [36]: Buffer }).get(`${prefix}${key}`), Buffer.from([0, 1, 2, 255]));
    assert.deepEqual(await raw.zRange(`${prefix}/index`, 0, -1), [key]);
    await storage.put('empty', '');
    assert.deepEqual(await storage.get('empty'), Buffer.alloc(0));
    assert.equal(await storage.get('certificates/acme-v02.api.letsencrypt.org-directory'), null, 'a "directory" is not a key');
  });

  test('values are binary-safe', { timeout: 10_000 }, async (t) => {
    const storage = await open(t);
    const every = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    await storage.put('bin/every-byte', every);
    assert.deepEqual(await storage.get('bin/every-byte'), every);
    const big = randomBytes(1024 * 1024);
    await storage.put('bin/big', big);
    assert.deepEqual(await storage.get('bin/big'), big);
    const text = 'ünïcødé ✓ \u{1F512}\r\n\0end';
    await storage.put('bin/text', text);
    assert.equal((await storage.get('bin/text'))?.toString('utf8'), text);
  });

  test('delete: missing is fine; the index and the private set follow', { timeout: 10_000 }, async (t) => {
    const prefix = newPrefix();
    const storage = await open(t, { prefix });
    await storage.put('a/b/c/one', '1');
    await storage.put('a/two', '2', { private: true });
    assert.equal(await raw.sIsMember(`${prefix}/private`, 'a/two'), 1);
    assert.equal(await raw.sIsMember(`${prefix}/private`, 'a/b/c/one'), 0);
    await storage.delete('a/b/c/one');
    assert.equal(await storage.get('a/b/c/one'), null);
    assert.deepEqual(await storage.list(''), ['a/two']);
    await storage.delete('a/b/c/one');
    await storage.delete('never/existed');
    await storage.delete('a'); // a "directory", not a key: nothing happens
    assert.deepEqual(await storage.get('a/two'), Buffer.from('2'));
    await storage.put('a/two', 'public now');
    assert.equal(await raw.sIsMember(`${prefix}/private`, 'a/two'), 0);
    await storage.put('a/two', 'secret again', { private: true });
    await storage.delete('a/two');
    assert.deepEqual(await storage.list(''), []);
    assert.equal(await raw.exists([`${prefix}/index`, `${prefix}/private`, `${prefix}a/two`]), 0, 'nothing left behind');
  });

  test('list: sorted, prefix forms, locks only when asked, glob characters are literal', { timeout: 10_000 }, async (t) => {
    const storage = await open(t);
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
    const holder = JSON.parse((await storage.get('locks/issue/alpha.com.lock'))!.toString()) as Record<string, unknown>;
    assert.equal(holder.pid, process.pid);
    await lock.release();
    assert.deepEqual(await storage.list('locks/'), []);

    // Glob and regex characters in keys and prefixes are plain characters.
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

    // Non-ASCII keys: the same order as the file backend (JavaScript string sort).
    const intl = ['u/zz', 'u/\u00e9', 'u/\uff21', 'u/\u{1F600}', 'u/a'];
    for (const key of intl) await storage.put(key, 'x');
    assert.deepEqual(await storage.list('u/'), [...intl].sort());
    assert.deepEqual(await storage.list('u/\u00e9'), ['u/\u00e9']);
  });

  test('prefixes isolate deployments sharing one Redis', { timeout: 10_000 }, async (t) => {
    const a = await open(t);
    const b = await open(t);
    await a.put('certificates/x', 'a');
    await b.put('certificates/x', 'b');
    await b.put('certificates/y', 'b');
    assert.deepEqual(await a.list(''), ['certificates/x']);
    assert.deepEqual(await a.get('certificates/x'), Buffer.from('a'));
    const lock = await a.tryLock('same', { ttlMs: 5_000 });
    assert.ok(lock);
    const other = await b.tryLock('same', { ttlMs: 5_000 });
    assert.ok(other, 'locks of another prefix are independent');
    await Promise.all([lock.release(), other.release()]);
  });

  test('invalid keys, prefixes and lock names are rejected; locks/ is reserved', { timeout: 10_000 }, async (t) => {
    const storage = await open(t);
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
    // Same names as the file backend refuses, so data can move between backends.
    await rejectsWith(storage.put('a/.b.0123456789abcdef.tmp', 'v'), 'validate-key');
    await rejectsWith(storage.put('locks/x.lock', 'v'), 'validate-key', /reserved/);
    await rejectsWith(storage.put('locks', 'v'), 'validate-key', /reserved/);
    await rejectsWith(storage.delete('locks/x.lock'), 'validate-key', /reserved/);
    await rejectsWith(storage.tryLock('a.lock/b', { ttlMs: 1000 }), 'validate-key');
    await rejectsWith(storage.tryLock('ok', { ttlMs: 0 }), 'lock');
    await rejectsWith(storage.lock('ok', { ttlMs: 1000, pollMs: -1 }), 'lock');
    await assert.rejects(storage.publish('', 'x'), TypeError);
  });

  test('list over 20,000 keys is complete and sorted, and never uses KEYS or SCAN', { timeout: 30_000 }, async (t) => {
    const storage = await open(t);
    const keys: string[] = [];
    for (let i = 0; i < 20_000; i++) keys.push(`certificates/ca/d${String(i).padStart(5, '0')}.example/cert.pem`);
    for (let i = 0; i < keys.length; i += 1_000) {
      await Promise.all(keys.slice(i, i + 1_000).map((k) => storage.put(k, 'x')));
    }
    await storage.put('accounts/ca/account.json', '{}');
    await raw.configResetStat();
    const started = Date.now();
    const all = await storage.list('certificates/');
    const elapsed = Date.now() - started;
    assert.equal(all.length, 20_000);
    assert.deepEqual(all, keys); // zero-padded, so generation order is sorted order
    assert.deepEqual(await storage.list('certificates/ca/d1234'), keys.slice(12_340, 12_350));
    assert.equal((await storage.list('')).length, 20_001);
    const stats = await raw.info('commandstats');
    assert.doesNotMatch(stats, /cmdstat_keys:/);
    assert.doesNotMatch(stats, /cmdstat_scan:/);
    assert.match(stats, /cmdstat_zrangebylex:calls=\d+/);
    t.diagnostic(`list of 20,000 keys took ${elapsed} ms`);
    assert.ok(elapsed < 5_000, `list took ${elapsed} ms`);
  });

  test('concurrent puts and deletes of the same keys keep the index and the data in step', { timeout: 15_000 }, async (t) => {
    const storage = await open(t);
    const other = await open(t, { prefix: storage.prefix });
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
});

describe('RedisStorage: locks', () => {
  test('tryLock excludes, release frees, release twice is fine, a stale release is harmless', { timeout: 10_000 }, async (t) => {
    const storage = await open(t);
    const other = await open(t, { prefix: storage.prefix });
    const lock = await storage.tryLock('issue/blog.alice.com', { ttlMs: 10_000 });
    assert.ok(lock);
    assert.equal(lock.name, 'issue/blog.alice.com');
    assert.equal(await storage.tryLock('issue/blog.alice.com', { ttlMs: 10_000 }), null);
    assert.equal(await other.tryLock('issue/blog.alice.com', { ttlMs: 10_000 }), null);
    const pttl = await raw.pTTL(`${storage.prefix}locks/issue/blog.alice.com.lock`);
    assert.ok(pttl > 9_000 && pttl <= 10_000, `pttl ${pttl}`);
    const sibling = await other.tryLock('issue/blog.bob.com', { ttlMs: 10_000 });
    assert.ok(sibling);
    await lock.release();
    await lock.release();
    await rejectsWith(lock.refresh(), 'refresh', /released/);
    const again = await other.tryLock('issue/blog.alice.com', { ttlMs: 10_000 });
    assert.ok(again);
    await lock.release(); // must not remove the new holder's lock
    assert.equal(await storage.tryLock('issue/blog.alice.com', { ttlMs: 10_000 }), null);
    await Promise.all([again.release(), again.release(), sibling.release()]);
    assert.deepEqual(await storage.list('locks/'), []);
  });

  test('refresh extends the expiry', { timeout: 10_000 }, async (t) => {
    const storage = await open(t);
    const lock = await storage.tryLock('renew', { ttlMs: 1_000 });
    assert.ok(lock);
    for (let i = 0; i < 5; i++) {
      await sleep(300);
      await lock.refresh();
      assert.equal(await storage.tryLock('renew', { ttlMs: 1_000 }), null, `taken over after refresh ${i}`);
    }
    const pttl = await raw.pTTL(`${storage.prefix}locks/renew.lock`);
    assert.ok(pttl > 500, `pttl ${pttl} after 1.5 s with a 1 s ttl`);
    await lock.release();
  });

  test('an expired lock is taken over; the old holder loses it and cannot release the new one', { timeout: 10_000 }, async (t) => {
    const storage = await open(t);
    const old = await storage.tryLock('issue/x.com', { ttlMs: 500 });
    assert.ok(old);
    assert.equal(await storage.tryLock('issue/x.com', { ttlMs: 500 }), null);
    await sleep(600);
    const taker = await storage.tryLock('issue/x.com', { ttlMs: 10_000 });
    assert.ok(taker, 'expired lock was not taken over');
    const key = `${storage.prefix}locks/issue/x.com.lock`;
    const takerValue = await raw.get(key);
    const err = await rejectsWith(old.refresh(), 'refresh', /lock lost/);
    assert.match(err.message, new RegExp(`pid ${process.pid}`));
    await old.release();
    assert.equal(await raw.get(key), takerValue, "old holder's release removed the new holder's lock");
    await taker.refresh();
    await taker.release();
    assert.equal(await raw.get(key), null);
  });

  test('a waiter in lock() is woken by the release notification, not by the 1 s poll', { timeout: 15_000 }, async (t) => {
    const holderSide = await open(t);
    const waiterSide = await open(t, { prefix: holderSide.prefix });
    for (let round = 0; round < 3; round++) {
      const held = await holderSide.tryLock('notify', { ttlMs: 10_000 });
      assert.ok(held);
      const waitStarted = Date.now();
      const waiting = waiterSide.lock('notify', { ttlMs: 10_000, waitMs: 10_000 }).then((lock) => ({ lock, at: Date.now() }));
      await sleep(150);
      const releasedAt = Date.now();
      await held.release();
      const { lock, at } = await waiting;
      // The fallback poll is 1 s ± 20 % after the wait began, i.e. >= 650 ms after the release.
      const latency = at - releasedAt;
      t.diagnostic(`round ${round}: acquired ${latency} ms after the release (${at - waitStarted} ms after waiting began)`);
      assert.ok(latency < 500, `waiter took ${latency} ms after the release`);
      await lock.release();
    }
  });

  test('a waiter still gets a lock whose holder vanished (key expiry) through the slow poll', { timeout: 15_000 }, async (t) => {
    const storage = await open(t);
    const other = await open(t, { prefix: storage.prefix });
    const held = await storage.tryLock('vanish', { ttlMs: 400 });
    assert.ok(held);
    const expiresAt = Date.now() + (await raw.pTTL(`${storage.prefix}locks/vanish.lock`));
    const started = Date.now();
    const lock = await other.lock('vanish', { ttlMs: 5_000, waitMs: 5_000 });
    const elapsed = Date.now() - started;
    t.diagnostic(`acquired ${elapsed} ms after waiting began (holder expired after ~400 ms, poll 1 s ± 20 %)`);
    assert.ok(Date.now() >= expiresAt - 5, 'acquired before the holder expired');
    assert.ok(elapsed >= 750 && elapsed < 2_600, `elapsed ${elapsed} ms: expected the first or second slow poll`);
    await rejectsWith(held.refresh(), 'refresh', /lock lost/);
    await lock.release();
  });

  test('lock() gives up after waitMs naming the lock and its holder; default waitMs is 2 x ttl', { timeout: 10_000 }, async (t) => {
    const storage = await open(t);
    const other = await open(t, { prefix: storage.prefix });
    const held = await storage.lock('issue/wait.com', { ttlMs: 5_000 });
    const started = Date.now();
    const err = await rejectsWith(other.lock('issue/wait.com', { ttlMs: 5_000, waitMs: 300 }), 'lock');
    assert.ok(Date.now() - started >= 290);
    assert.ok(Date.now() - started < 2_000, 'the wait is bounded by waitMs, not by the poll');
    assert.equal(err.key, 'issue/wait.com');
    assert.match(err.message, /issue\/wait\.com/);
    assert.match(err.message, /held by pid \d+/);
    assert.match(err.message, new RegExp(`pid ${process.pid}`));
    // A short-ttl holder that never refreshes is taken over within the default wait.
    const short = await storage.lock('short', { ttlMs: 200 });
    const next = await other.lock('short', { ttlMs: 200, pollMs: 20 });
    await rejectsWith(short.refresh(), 'refresh', /lock lost/);
    await Promise.all([held.release(), next.release(), short.release()]);
  });

  test('close() wakes waiters, which then fail at once', { timeout: 10_000 }, async (t) => {
    const storage = await open(t);
    const other = await RedisStorage.connect({ url: server.url, prefix: storage.prefix, logger: silentLogger() });
    const held = await storage.tryLock('closing', { ttlMs: 10_000 });
    assert.ok(held);
    const waiting = other.lock('closing', { ttlMs: 10_000, waitMs: 10_000 });
    await sleep(100);
    const started = Date.now();
    const closed = other.close();
    await rejectsWith(waiting, 'lock', /closed/);
    await closed;
    assert.ok(Date.now() - started < 500);
    await rejectsWith(other.get('x'), 'read', /closed/);
    await held.release();
  });
});

// -------------------------------------------------------------------------------------------------

function spawnCounter(t: TestContext, iterations: number, phases: string[]): ChildProcess & { lines: AsyncIterator<string> } {
  const child = spawn(nodeBin, ['--import', 'tsx', childScript, 'counter', server.url, String(iterations), ...phases], {
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
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((done) => child.once('exit', (code, signal) => done({ code, signal })));
}

describe('RedisStorage: locks across processes', () => {
  test('a counter incremented under the lock by several processes loses no update; without it, it does', { timeout: 40_000 }, async (t) => {
    const procs = 4;
    const iterations = 15;
    // Each child runs two phases, all children released together for each: first without the
    // lock (the control, which must lose updates, or the test could not fail), then with it.
    const control = await open(t);
    const locked = await open(t);
    const children = Array.from({ length: procs }, () => spawnCounter(t, iterations, [`${control.prefix}:nolock`, `${locked.prefix}:lock`]));
    await Promise.all(children.map((c) => expectLine(c, 'ready')));
    for (let phase = 0; phase < 2; phase++) {
      for (const c of children) c.stdin!.write('go\n');
      await Promise.all(children.map((c) => expectLine(c, 'done')));
    }
    for (const c of children) c.stdin!.end();
    for (const r of await Promise.all(children.map(exited))) assert.deepEqual(r, { code: 0, signal: null });
    const lost = Number((await control.get('counter'))?.toString());
    assert.ok(lost < procs * iterations, `the control lost no update (${lost}): the workload does not race`);
    assert.equal(Number((await locked.get('counter'))?.toString()), procs * iterations);
    assert.deepEqual(await locked.list('locks/'), []);
  });
});

describe('ClusterBus: Redis pub/sub and LocalBus', () => {
  test('publish reaches subscribers on every instance (including the publisher) within 1 s', { timeout: 10_000 }, async (t) => {
    const a = await open(t);
    const b = await open(t, { prefix: a.prefix });
    const foreign = await open(t); // another deployment (prefix): must not hear it
    const onB = nextMessage(b, 'certificates');
    const onA = nextMessage(a, 'certificates');
    const heardByForeign: string[] = [];
    await foreign.subscribe('certificates', (m) => heardByForeign.push(m));
    await Promise.all([onA.ready, onB.ready]);
    const started = Date.now();
    await a.publish('certificates', '{"domain":"blog.alice.com","event":"changed"}');
    assert.equal(await onB.received, '{"domain":"blog.alice.com","event":"changed"}');
    assert.equal(await onA.received, '{"domain":"blog.alice.com","event":"changed"}');
    assert.ok(Date.now() - started < 1_000);
    await sleep(50);
    assert.deepEqual(heardByForeign, []);
  });

  test('unsubscribe stops delivery; a throwing handler does not disturb the others', { timeout: 10_000 }, async (t) => {
    const a = await open(t);
    const b = await open(t, { prefix: a.prefix });
    const first: string[] = [];
    const second: string[] = [];
    const unsubscribeFirst = await b.subscribe('ch', (m) => first.push(m));
    await b.subscribe('ch', () => {
      throw new Error('handler bug');
    });
    await b.subscribe('ch', (m) => second.push(m));
    await a.publish('ch', 'one');
    await until('both handlers got "one"', async () => first.length === 1 && second.length === 1, 1_000, 10);
    await unsubscribeFirst();
    await unsubscribeFirst(); // twice is fine
    await a.publish('ch', 'two');
    await until('the second handler got "two"', async () => second.length === 2, 1_000, 10);
    await sleep(50);
    assert.deepEqual(first, ['one']);
    assert.deepEqual(second, ['one', 'two']);
  });

  test('LocalBus: delivers to every subscriber, unsubscribe works, handlers cannot break it', { timeout: 5_000 }, async () => {
    const bus = new LocalBus();
    const got: string[] = [];
    const unsubscribe = await bus.subscribe('c', (m) => got.push(`1:${m}`));
    await bus.subscribe('c', () => {
      throw new Error('sync bug');
    });
    await bus.subscribe('c', (async () => {
      throw new Error('async bug');
    }) as unknown as (m: string) => void);
    await bus.subscribe('c', (m) => got.push(`2:${m}`));
    await bus.subscribe('other', (m) => got.push(`other:${m}`));
    await bus.publish('c', 'a');
    await until('delivery', async () => got.length === 2, 1_000, 5);
    assert.deepEqual(got.sort(), ['1:a', '2:a']);
    await unsubscribe();
    await bus.publish('c', 'b');
    await bus.publish('nobody', 'x');
    await until('delivery', async () => got.length === 3, 1_000, 5);
    await sleep(10);
    assert.deepEqual(got.sort(), ['1:a', '2:a', '2:b']);
  });
});

describe('RedisStorage: resilience', () => {
  test('Redis killed: operations fail fast; restarted: the same instance recovers, subscriptions too', { timeout: 30_000 }, async (t) => {
    const own = await startRedis();
    t.after(() => own.dispose());
    const prefix = newPrefix();
    const capture = captureLogger();
    const a = await RedisStorage.connect({ url: own.url, prefix, logger: capture.logger });
    t.after(() => a.close());
    const b = await RedisStorage.connect({ url: own.url, prefix, logger: silentLogger() });
    t.after(() => b.close());
    const heard: string[] = [];
    await b.subscribe('certificates', (m) => heard.push(m));
    const heardByDropped: string[] = [];
    const unsubscribeDropped = await b.subscribe('certificates', (m) => heardByDropped.push(m));
    await a.put('before', 'kept');
    let reconnects = 0;
    b.onReconnect(() => reconnects++);

    await own.kill();
    await sleep(50);
    for (const [name, op, step] of [
      ['get', () => a.get('before'), 'read'],
      ['put', () => a.put('during', 'lost'), 'write'],
      ['delete', () => a.delete('before'), 'delete'],
      ['list', () => a.list(''), 'list'],
      ['tryLock', () => a.tryLock('l', { ttlMs: 1_000 }), 'lock'],
      ['lock', () => a.lock('l', { ttlMs: 1_000 }), 'lock'],
      ['publish', () => a.publish('certificates', 'x'), 'publish'],
      ['subscribe', () => a.subscribe('certificates', () => {}), 'subscribe'],
    ] as const) {
      const started = Date.now();
      await rejectsWith(op(), step, /Redis is unreachable/);
      const elapsed = Date.now() - started;
      assert.ok(elapsed < 2_000, `${name} took ${elapsed} ms to fail`);
    }
    // Unsubscribing while Redis is down does not fail, and takes effect at once.
    const unsubscribeStarted = Date.now();
    await unsubscribeDropped();
    assert.ok(Date.now() - unsubscribeStarted < 2_000);
    // Still failing fast after the reconnect loop has been running for a while.
    await sleep(500);
    const started = Date.now();
    await rejectsWith(a.get('before'), 'read', /unreachable/);
    assert.ok(Date.now() - started < 2_000);

    await own.restart();
    await until('the same instance works again', async () => (await a.get('before'))?.toString() === 'kept', 8_000);
    // The put during the outage did not happen at all (not half: no index entry either).
    assert.equal(await a.get('during'), null);
    assert.deepEqual(await a.list(''), ['before']);
    // b says it is back, so its user can re-check what it may have missed.
    await until('onReconnect listeners called', async () => reconnects === 1, 8_000);
    // b's subscription was restored by itself.
    await until('a message published after the restart reaches b', async () => {
      await a.publish('certificates', 'after restart');
      return heard.includes('after restart');
    }, 8_000, 200);
    await a.put('after', 'ok');
    assert.deepEqual(await b.list(''), ['after', 'before']);
    assert.deepEqual(heardByDropped, [], 'a handler unsubscribed during the outage was called');

    // One warn line when the connection dropped, one info line when it came back.
    await until('the "restored" log line', async () => capture.entries().some((e) => e.level === 30 && /restored/.test(e.msg)), 3_000);
    const entries = capture.entries();
    assert.equal(entries.filter((e) => e.level === 40).length, 1, JSON.stringify(entries.filter((e) => e.level >= 40)));
    assert.match(entries.find((e) => e.level === 40)!.msg, /connection lost/);
    assert.equal(entries.filter((e) => e.level === 30 && /restored/.test(e.msg)).length, 1);
  });

  test('a server that accepts but never answers: commands time out instead of hanging', { timeout: 15_000 }, async (t) => {
    const own = await startRedis();
    t.after(() => own.dispose());
    const storage = await RedisStorage.connect({ url: own.url, prefix: newPrefix(), logger: silentLogger(), commandTimeoutMs: 300 });
    t.after(() => storage.close());
    await storage.put('k', 'v');
    const pid = own.pid();
    assert.ok(pid !== undefined);
    process.kill(pid, 'SIGSTOP');
    try {
      const started = Date.now();
      await rejectsWith(storage.get('k'), 'read', /did not answer within 300 ms/);
      assert.ok(Date.now() - started < 1_000);
      await rejectsWith(storage.tryLock('l', { ttlMs: 1_000 }), 'lock', /did not answer/);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    await until('answers again', async () => (await storage.get('k'))?.toString() === 'v', 5_000);
  });

  test('connect() fails fast with StorageError when nothing listens', { timeout: 10_000 }, async () => {
    const port = await freePort();
    const started = Date.now();
    await rejectsWith(
      RedisStorage.connect({ url: `redis://127.0.0.1:${port}`, logger: silentLogger(), connectTimeoutMs: 500 }),
      'connect',
      /unreachable/,
    );
    assert.ok(Date.now() - started < 2_000);
  });
});

describe('RedisStorage: options, Sentinel and Cluster', () => {
  test('option validation and descriptions (no network)', () => {
    const logger = silentLogger();
    const described = resolveRedisOptions({ url: 'redis://user:s3cret@127.0.0.1:6390/2', logger });
    assert.equal(described.description, 'redis:127.0.0.1:6390/certgate:');
    assert.equal(resolveRedisOptions({ logger }).description, 'redis:127.0.0.1:6379/certgate:');
    assert.equal(resolveRedisOptions({ url: 'rediss://h.example', prefix: 'p:', logger }).description, 'redis:h.example:6379/p:');
    const configError = (opts: Omit<RedisStorageOptions, 'logger'>, message: RegExp): void => {
      assert.throws(
        () => resolveRedisOptions({ ...opts, logger }),
        (err: unknown) => err instanceof StorageError && err.step === 'config' && message.test(err.message),
      );
    };
    configError({ url: 'redis://x', cluster: { rootNodes: ['redis://y'] } }, /exactly one/);
    configError({ url: 'http://x' }, /redis:\/\//);
    configError({ url: 'not a url' }, /not a URL/);
    configError({ url: 'redis://x', commandTimeoutMs: 0 }, /commandTimeoutMs/);
    configError({ cluster: { rootNodes: [] } }, /rootNodes/);
    configError({ cluster: { rootNodes: ['http://y'] } }, /rootNodes\[0\]/);
    configError({ sentinel: { name: '', sentinels: [{ host: 'h', port: 1 }] } }, /sentinel\.name/);
    configError({ sentinel: { name: 'm', sentinels: [] } }, /sentinels/);
    configError({ sentinel: { name: 'm', sentinels: [{ host: 'h', port: 70_000 }] } }, /sentinels\[0\]/);

    // Cluster: the prefix carries a hash tag so a key, the index and the private set share a slot.
    const cluster = resolveRedisOptions({ cluster: { rootNodes: ['redis://:pw@10.0.0.1:7000', 'redis://10.0.0.2:7000'] }, logger });
    assert.equal(cluster.prefix, '{certgate:}');
    assert.equal(cluster.description, 'redis:cluster:10.0.0.1:7000,10.0.0.2:7000/{certgate:}');
    assert.equal(resolveRedisOptions({ cluster: { rootNodes: ['redis://h:1'] }, prefix: '{cg}:', logger }).prefix, '{cg}:');
    configError({ cluster: { rootNodes: ['redis://h:1'] }, prefix: '}x' }, /hash tag/); // '{}x}' has an empty tag
    configError({ cluster: { rootNodes: ['redis://h:1'] }, prefix: '' }, /non-empty prefix/);
    assert.ok(hasHashTag('{a}b') && hasHashTag('x{a}') && !hasHashTag('{}a') && !hasHashTag('a{b') && !hasHashTag('ab'));
    // Standalone and Sentinel keep the prefix as given.
    const sentinel = resolveRedisOptions({ sentinel: { name: 'mymaster', sentinels: [{ host: 's1', port: 26379 }], password: 'pw' }, logger });
    assert.equal(sentinel.prefix, 'certgate:');
    assert.equal(sentinel.description, 'redis:sentinel:mymaster@s1:26379/certgate:');
  });

  test('Sentinel: discovers the master, works end to end, survives a master restart', { timeout: 30_000 }, async (t) => {
    const sentinel = await startSentinel('cg-master');
    t.after(() => sentinel.stop());
    const opts = { sentinel: { name: 'cg-master', sentinels: [{ host: '127.0.0.1', port: sentinel.port }] }, prefix: newPrefix(), logger: silentLogger() };
    const a = await RedisStorage.connect(opts);
    t.after(() => a.close());
    const b = await RedisStorage.connect(opts);
    t.after(() => b.close());
    assert.equal(a.description, `redis:sentinel:cg-master@127.0.0.1:${sentinel.port}/${opts.prefix}`);
    await a.put('certificates/x/cert.pem', Buffer.from([1, 2, 3]), { private: true });
    assert.deepEqual(await b.get('certificates/x/cert.pem'), Buffer.from([1, 2, 3]));
    assert.deepEqual(await b.list('certificates/'), ['certificates/x/cert.pem']);
    // Really on the monitored master.
    const master = createClient({ url: sentinel.master.url });
    master.on('error', () => {});
    await master.connect();
    t.after(() => master.close());
    assert.equal(await master.exists(`${opts.prefix}certificates/x/cert.pem`), 1);
    // Locks with notification, and the bus.
    const held = await a.tryLock('issue/x', { ttlMs: 10_000 });
    assert.ok(held);
    const waiting = b.lock('issue/x', { ttlMs: 10_000 });
    await sleep(100);
    const releasedAt = Date.now();
    await held.release();
    await (await waiting).release();
    assert.ok(Date.now() - releasedAt < 500);
    const msg = nextMessage(b, 'certificates');
    await msg.ready;
    await a.publish('certificates', 'hello');
    assert.equal(await msg.received, 'hello');
    await a.delete('certificates/x/cert.pem');
    assert.deepEqual(await b.list(''), []);

    // The master dies: fail fast (not after the command time limit); it comes back: recover.
    await a.put('kept', 'yes');
    await sentinel.master.kill();
    // Including a command already on its way when the connection drops (node-redis' Sentinel
    // client would retry it until the time limit).
    const started = Date.now();
    await rejectsWith(a.get('kept'), 'read', /unreachable/);
    assert.ok(Date.now() - started < 2_000, `took ${Date.now() - started} ms to fail`);
    await rejectsWith(a.put('other', 'x'), 'write', /unreachable/);
    assert.ok(Date.now() - started < 2_000);
    await sentinel.master.restart();
    await until('a works again', async () => (await a.get('kept'))?.toString() === 'yes', 10_000);
    await until('b works again', async () => (await b.get('kept'))?.toString() === 'yes', 10_000);
    const heard: string[] = [];
    await b.subscribe('after', (m) => heard.push(m));
    await until('the bus delivers again', async () => {
      await a.publish('after', 'x');
      return heard.length > 0;
    }, 8_000, 200);
  });

  test('Cluster (3 masters): one slot per deployment, locks and bus work', { timeout: 30_000 }, async (t) => {
    const cluster = await startRedisCluster(3);
    t.after(() => cluster.stop());
    const opts = { cluster: { rootNodes: cluster.urls }, logger: silentLogger() };
    const a = await RedisStorage.connect(opts);
    t.after(() => a.close());
    const b = await RedisStorage.connect({ ...opts, cluster: { rootNodes: [cluster.urls[2]!] } });
    t.after(() => b.close());
    assert.equal(a.prefix, '{certgate:}');
    const keys = Array.from({ length: 50 }, (_, i) => `certificates/ca/d${String(i).padStart(2, '0')}.example/cert.pem`);
    for (const key of keys) await a.put(key, key, { private: key.endsWith('7.example/cert.pem') });
    assert.deepEqual(await b.list('certificates/'), keys);
    assert.deepEqual(await b.get(keys[3]!), Buffer.from(keys[3]!));
    await b.delete(keys[0]!);
    assert.equal(await a.get(keys[0]!), null);
    assert.deepEqual(await a.list('certificates/ca/d0'), keys.slice(1, 10));
    // Every key of the deployment is in the hash tag's slot.
    const node = createClient({ url: cluster.urls[0] });
    node.on('error', () => {});
    await node.connect();
    t.after(() => node.close());
    const slot = await node.clusterKeySlot('{certgate:}/index');
    for (const key of [`{certgate:}${keys[5]!}`, '{certgate:}/private', '{certgate:}locks/x.lock']) {
      assert.equal(await node.clusterKeySlot(key), slot, key);
    }
    // Locks: exclusion, notification wake-up across instances, lock listing by SCAN on the slot's node.
    const held = await a.tryLock('issue/d1.example', { ttlMs: 10_000 });
    assert.ok(held);
    assert.equal(await b.tryLock('issue/d1.example', { ttlMs: 10_000 }), null);
    assert.deepEqual(await b.list('locks/'), ['locks/issue/d1.example.lock']);
    const waiting = b.lock('issue/d1.example', { ttlMs: 10_000 });
    await sleep(100);
    const releasedAt = Date.now();
    await held.release();
    const next = await waiting;
    assert.ok(Date.now() - releasedAt < 500, 'woken by the release notification');
    await next.release();
    // Bus across instances connected through different seed nodes.
    const msg = nextMessage(a, 'certificates');
    await msg.ready;
    await b.publish('certificates', 'from b');
    assert.equal(await msg.received, 'from b');
  });
});
