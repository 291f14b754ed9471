// RedisStorage: the storage contract (contract.ts), then what only the Redis backend does: its
// key space (index, private set, prefixes), release notifications, the cluster bus, surviving a
// Redis restart, and Sentinel and Cluster deployments.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { pino } from 'pino';
import { ConnectionTimeoutError, createClient } from 'redis';

import { silentLogger, type Logger } from '../../src/util/log.ts';
import { LocalBus } from '../../src/storage/bus.ts';
import { RedisStorage } from '../../src/storage/redis/store.ts';
import { hasHashTag, resolveRedisOptions, type RedisStorageOptions } from '../../src/storage/redis/options.ts';
import { StorageError, type Storage } from '../../src/storage/storage.ts';
import { freePort } from '../support/ports.ts';
import { startRedis, startRedisCluster, startSentinel, type RedisHandle } from '../support/redis.ts';
import { describeStorageContract, rejectsWith } from './contract.ts';

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

const prefixOf = (storage: Storage): string => (storage as RedisStorage).prefix;

/** A logger that keeps its JSON lines, for asserting what was logged. */
function captureLogger(): { logger: Logger; entries: () => Array<{ level: number; msg: string }> } {
  const lines: string[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => void lines.push(line) });
  return { logger, entries: () => lines.map((l) => JSON.parse(l) as { level: number; msg: string }) };
}

/** Resolves with the next message on `channel` of `storage`'s bus, or rejects after `ms`. */
function nextMessage(storage: RedisStorage, channel: string, ms = 10_000): { received: Promise<string>; ready: Promise<() => Promise<void>> } {
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

/**
 * For lock waits that must end by a release notification (or close()), not by the slow poll: a
 * poll interval and a wait far beyond any test's time limit. A waiter also wakes when the
 * holder's lease ends, so the lock waited for is held with HELD_LONG too.
 */
const NO_POLL = { waitMs: 600_000, pollMs: 600_000 };
/** A lease no test outlives. */
const HELD_LONG = { ttlMs: 600_000 };

describeStorageContract('RedisStorage', {
  open: (t) => open(t),
  openSibling: (t, storage) => open(t, { prefix: prefixOf(storage) }),
  childSpec: (storage) => ({ redis: { url: server.url, prefix: prefixOf(storage) } }),
  async lockExpiresAt(storage, name) {
    // PTTL is relative to when Redis ran it, somewhere between these two readings.
    const before = Date.now();
    const pttl = await raw.pTTL(`${prefixOf(storage)}locks/${name}.lock`);
    const after = Date.now();
    // -2: the key is gone (expired); -1 would be a lock without expiry, which must never exist.
    assert.notEqual(pttl, -1, `lock ${name} has no expiry`);
    return { earliest: before + Math.max(pttl, 0), latest: after + Math.max(pttl, 0) };
  },
});

describe('RedisStorage: key space', () => {
  test('description and readable key space: <prefix><key>, plus the index', { timeout: 10_000 }, async (t) => {
    const prefix = newPrefix();
    const storage = await open(t, { prefix });
    assert.equal(storage.description, `redis:127.0.0.1:${server.port}/${prefix}`);
    const key = 'certificates/acme-v02.api.letsencrypt.org-directory/blog.alice.com/cert.pem';
    await storage.put(key, Buffer.from([0, 1, 2, 255]));
    assert.deepEqual(await raw.withTypeMapping({ [36]: Buffer }).get(`${prefix}${key}`), Buffer.from([0, 1, 2, 255]));
    assert.deepEqual(await raw.zRange(`${prefix}/index`, 0, -1), [key]);
  });

  test('delete: the index and the private set follow', { timeout: 10_000 }, async (t) => {
    const prefix = newPrefix();
    const storage = await open(t, { prefix });
    await storage.put('a/b/c/one', '1');
    await storage.put('a/two', '2', { private: true });
    assert.equal(await raw.sIsMember(`${prefix}/private`, 'a/two'), 1);
    assert.equal(await raw.sIsMember(`${prefix}/private`, 'a/b/c/one'), 0);
    await storage.delete('a/b/c/one');
    assert.deepEqual(await raw.zRange(`${prefix}/index`, 0, -1), ['a/two']);
    await storage.put('a/two', 'public now');
    assert.equal(await raw.sIsMember(`${prefix}/private`, 'a/two'), 0);
    await storage.put('a/two', 'secret again', { private: true });
    await storage.delete('a/two');
    assert.deepEqual(await storage.list(''), []);
    assert.equal(await raw.exists([`${prefix}/index`, `${prefix}/private`, `${prefix}a/two`]), 0, 'nothing left behind');
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

  test('list over 20,000 keys is complete and sorted, and never uses KEYS or SCAN', { timeout: 60_000 }, async (t) => {
    const storage = await open(t);
    const keys: string[] = [];
    for (let i = 0; i < 20_000; i++) keys.push(`certificates/ca/d${String(i).padStart(5, '0')}.example/cert.pem`);
    for (let i = 0; i < keys.length; i += 1_000) {
      await Promise.all(keys.slice(i, i + 1_000).map((k) => storage.put(k, 'x')));
    }
    await storage.put('accounts/ca/account.json', '{}');
    await raw.configResetStat();
    const all = await storage.list('certificates/');
    assert.equal(all.length, 20_000);
    assert.deepEqual(all, keys); // zero-padded, so generation order is sorted order
    assert.deepEqual(await storage.list('certificates/ca/d1234'), keys.slice(12_340, 12_350));
    assert.equal((await storage.list('')).length, 20_001);
    // How it lists, not how fast (speed is `npm run bench`'s business): by the index, never by
    // walking the key space.
    const stats = await raw.info('commandstats');
    assert.doesNotMatch(stats, /cmdstat_keys:/);
    assert.doesNotMatch(stats, /cmdstat_scan:/);
    assert.match(stats, /cmdstat_zrangebylex:calls=\d+/);
  });

  test('paging is one ZRANGEBYLEX ... LIMIT per page', { timeout: 10_000 }, async (t) => {
    const storage = await open(t);
    const names = Array.from({ length: 30 }, (_, i) => `registry/domains/d${String(i).padStart(2, '0')}.example`);
    for (const name of names) await storage.put(name, '{}');
    await raw.configResetStat();
    assert.deepEqual(await storage.list('registry/domains/', { after: names[9]!, limit: 10 }), names.slice(10, 20));
    const stats = await raw.info('commandstats');
    assert.match(stats, /cmdstat_zrangebylex:calls=1,/);
    assert.doesNotMatch(stats, /cmdstat_scan:/);
  });
});

describe('RedisStorage: lock notifications', () => {
  test('a waiter in lock() is woken by the release notification, not by the slow poll', { timeout: 15_000 }, async (t) => {
    const holderSide = await open(t);
    const waiterSide = await open(t, { prefix: holderSide.prefix });
    for (let round = 0; round < 3; round++) {
      const held = await holderSide.tryLock('notify', { ttlMs: 60_000 });
      assert.ok(held);
      // The waiter's poll would first fire after 8+ minutes: only the notification can wake it.
      const waiting = waiterSide.lock('notify', { ttlMs: 60_000, ...NO_POLL }).then((lock) => ({ lock, at: Date.now() }));
      await sleep(150);
      const releasedAt = Date.now();
      await held.release();
      const { lock, at } = await waiting;
      t.diagnostic(`round ${round}: acquired ${at - releasedAt} ms after the release`);
      await lock.release();
    }
  });

  test('a waiter gets a lock whose holder vanished (key expiry) when the lease ends, not a poll later', { timeout: 30_000 }, async (t) => {
    const storage = await open(t);
    const other = await open(t, { prefix: storage.prefix });
    const held = await storage.tryLock('vanish', { ttlMs: 400 });
    assert.ok(held);
    // PTTL counts from when Redis ran it, after `before`: the lease ends no earlier than this.
    const before = Date.now();
    const notBefore = before + (await raw.pTTL(`${storage.prefix}locks/vanish.lock`));
    // An expiry publishes nothing, and the poll is far beyond the test's time limit: only the
    // waiter's own timer for the end of the holder's lease (PTTL) can wake it in time.
    const lock = await other.lock('vanish', { ttlMs: 5_000, ...NO_POLL });
    const acquiredAt = Date.now();
    t.diagnostic(`acquired ${acquiredAt - before} ms after waiting began (holder's lease: 400 ms)`);
    assert.ok(acquiredAt >= notBefore - 2, `acquired ${notBefore - acquiredAt} ms before the holder's lease ended`);
    await rejectsWith(held.refresh(), 'refresh', /lock lost/);
    await lock.release();
  });

  test('close() wakes waiters, which then fail at once', { timeout: 10_000 }, async (t) => {
    const storage = await open(t);
    const other = await RedisStorage.connect({ url: server.url, prefix: storage.prefix, logger: silentLogger() });
    const held = await storage.tryLock('closing', { ttlMs: 60_000 });
    assert.ok(held);
    // Neither the poll nor the wait limit can end this wait within the test's time limit.
    const waiting = other.lock('closing', { ttlMs: 60_000, ...NO_POLL });
    await sleep(100);
    const closed = other.close();
    await rejectsWith(waiting, 'lock', /closed/);
    await closed;
    await rejectsWith(other.get('x'), 'read', /closed/);
    await held.release();
  });
});

describe('ClusterBus: Redis pub/sub and LocalBus', () => {
  test('publish reaches subscribers on every instance (including the publisher), not other deployments', { timeout: 15_000 }, async (t) => {
    const a = await open(t);
    const b = await open(t, { prefix: a.prefix });
    const foreign = await open(t); // another deployment (prefix): must not hear it
    const onB = nextMessage(b, 'certificates');
    const onA = nextMessage(a, 'certificates');
    const heardByForeign: string[] = [];
    await foreign.subscribe('certificates', (m) => heardByForeign.push(m));
    await Promise.all([onA.ready, onB.ready]);
    await a.publish('certificates', '{"domain":"blog.alice.com","event":"changed"}');
    assert.equal(await onB.received, '{"domain":"blog.alice.com","event":"changed"}');
    assert.equal(await onA.received, '{"domain":"blog.alice.com","event":"changed"}');
    await sleep(50);
    assert.deepEqual(heardByForeign, []);
  });

  test('a channel name is required', { timeout: 10_000 }, async (t) => {
    const storage = await open(t);
    await assert.rejects(storage.publish('', 'x'), TypeError);
  });

  test('unsubscribe stops delivery; a throwing handler does not disturb the others', { timeout: 30_000 }, async (t) => {
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
    await until('both handlers got "one"', async () => first.length === 1 && second.length === 1, 10_000, 10);
    await unsubscribeFirst();
    await unsubscribeFirst(); // twice is fine
    await a.publish('ch', 'two');
    await until('the second handler got "two"', async () => second.length === 2, 10_000, 10);
    await sleep(50);
    assert.deepEqual(first, ['one']);
    assert.deepEqual(second, ['one', 'two']);
  });

  test('LocalBus: delivers to every subscriber, unsubscribe works, handlers cannot break it', { timeout: 30_000 }, async () => {
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
    await until('delivery', async () => got.length === 2, 10_000, 5);
    assert.deepEqual(got.sort(), ['1:a', '2:a']);
    await unsubscribe();
    await bus.publish('c', 'b');
    await bus.publish('nobody', 'x');
    await until('delivery', async () => got.length === 3, 10_000, 5);
    await sleep(10);
    assert.deepEqual(got.sort(), ['1:a', '2:a', '2:b']);
  });
});

/**
 * "Fails fast" with Redis gone means: at once (in milliseconds), not by running into a time limit.
 * The instances that check it get connect and command time limits of 60 s (LONG_LIMITS), and "fast"
 * is below FAST_MS: over a thousand times what failing at once takes, so a loaded machine does not
 * reach it, and still below the 5 s after which node-redis' own command limit would fail a command
 * that waited for the connection to come back.
 */
const LONG_LIMITS = { connectTimeoutMs: 60_000, commandTimeoutMs: 60_000 };
const FAST_MS = 4_000;

describe('RedisStorage: resilience', () => {
  test('Redis killed: operations fail fast; restarted: the same instance recovers, subscriptions too', { timeout: 60_000 }, async (t) => {
    const own = await startRedis();
    t.after(() => own.dispose());
    const prefix = newPrefix();
    const capture = captureLogger();
    const a = await RedisStorage.connect({ url: own.url, prefix, logger: capture.logger, ...LONG_LIMITS });
    t.after(() => a.close());
    const b = await RedisStorage.connect({ url: own.url, prefix, logger: silentLogger(), ...LONG_LIMITS });
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
      assert.ok(elapsed < FAST_MS, `${name} took ${elapsed} ms to fail`);
    }
    // Unsubscribing while Redis is down does not fail, and takes effect at once.
    const unsubscribeStarted = Date.now();
    await unsubscribeDropped();
    assert.ok(Date.now() - unsubscribeStarted < FAST_MS);
    // Still failing fast after the reconnect loop has been running for a while.
    await sleep(500);
    const started = Date.now();
    await rejectsWith(a.get('before'), 'read', /unreachable/);
    assert.ok(Date.now() - started < FAST_MS);

    await own.restart();
    await until('the same instance works again', async () => (await a.get('before'))?.toString() === 'kept', 20_000);
    // The put during the outage did not happen at all (not half: no index entry either).
    assert.equal(await a.get('during'), null);
    assert.deepEqual(await a.list(''), ['before']);
    // b says it is back, so its user can re-check what it may have missed.
    await until('onReconnect listeners called', async () => reconnects === 1, 20_000);
    // b's subscription was restored by itself.
    await until('a message published after the restart reaches b', async () => {
      await a.publish('certificates', 'after restart');
      return heard.includes('after restart');
    }, 20_000, 200);
    await a.put('after', 'ok');
    assert.deepEqual(await b.list(''), ['after', 'before']);
    assert.deepEqual(heardByDropped, [], 'a handler unsubscribed during the outage was called');

    // One warn line when the connection dropped, one info line when it came back.
    await until('the "restored" log line', async () => capture.entries().some((e) => e.level === 30 && /restored/.test(e.msg)), 10_000);
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
      // The configured limit ends the wait (a missing one would hang until the test's own limit).
      await rejectsWith(storage.get('k'), 'read', /did not answer within 300 ms/);
      await rejectsWith(storage.tryLock('l', { ttlMs: 1_000 }), 'lock', /did not answer/);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    await until('answers again', async () => (await storage.get('k'))?.toString() === 'v', 10_000);
  });

  test('connect() gives up after connectTimeoutMs with StorageError when nothing listens', { timeout: 10_000 }, async () => {
    const port = await freePort();
    // The configured limit ends the attempt (without it, the client would retry forever and the
    // test would hit its own 10 s limit).
    const err = await rejectsWith(
      RedisStorage.connect({ url: `redis://127.0.0.1:${port}`, logger: silentLogger(), connectTimeoutMs: 500 }),
      'connect',
      /unreachable/,
    );
    assert.ok(err.cause instanceof ConnectionTimeoutError, `ended by ${String(err.cause)}, not by connectTimeoutMs`);
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

  test('Sentinel: discovers the master, works end to end, survives a master restart', { timeout: 60_000 }, async (t) => {
    const sentinel = await startSentinel('cg-master');
    t.after(() => sentinel.stop());
    const opts = {
      sentinel: { name: 'cg-master', sentinels: [{ host: '127.0.0.1', port: sentinel.port }] },
      prefix: newPrefix(),
      logger: silentLogger(),
      ...LONG_LIMITS,
    };
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
    const held = await a.tryLock('issue/x', HELD_LONG);
    assert.ok(held);
    const waiting = b.lock('issue/x', { ttlMs: 10_000, ...NO_POLL }); // only the notification can wake it
    await sleep(100);
    await held.release();
    await (await waiting).release();
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
    assert.ok(Date.now() - started < FAST_MS, `took ${Date.now() - started} ms to fail`);
    await rejectsWith(a.put('other', 'x'), 'write', /unreachable/);
    assert.ok(Date.now() - started < FAST_MS);
    await sentinel.master.restart();
    await until('a works again', async () => (await a.get('kept'))?.toString() === 'yes', 20_000);
    await until('b works again', async () => (await b.get('kept'))?.toString() === 'yes', 20_000);
    const heard: string[] = [];
    await b.subscribe('after', (m) => heard.push(m));
    await until('the bus delivers again', async () => {
      await a.publish('after', 'x');
      return heard.length > 0;
    }, 20_000, 200);
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
    const held = await a.tryLock('issue/d1.example', HELD_LONG);
    assert.ok(held);
    assert.equal(await b.tryLock('issue/d1.example', { ttlMs: 10_000 }), null);
    assert.deepEqual(await b.list('locks/'), ['locks/issue/d1.example.lock']);
    const waiting = b.lock('issue/d1.example', { ttlMs: 10_000, ...NO_POLL }); // only the notification can wake it
    await sleep(100);
    await held.release();
    const next = await waiting;
    await next.release();
    // Bus across instances connected through different seed nodes.
    const msg = nextMessage(a, 'certificates');
    await msg.ready;
    await b.publish('certificates', 'from b');
    assert.equal(await msg.received, 'from b');
  });
});
