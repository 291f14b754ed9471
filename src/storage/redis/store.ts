// Redis storage backend, shared by many gateway instances. It is also their cluster bus (Redis
// pub/sub, bus.ts), so "certificate X changed" reaches every instance's memory cache. The
// pieces: options.ts (which Redis, prefix, time limits), connection.ts (health, time limits),
// drivers.ts (standalone, Sentinel, Cluster), scripts.ts (the Lua steps), locks.ts, bus.ts.
// README.md sums up the key space, the guarantees and how to operate Redis for this.
//
// Key space (readable with redis-cli; <p> is the prefix, default `certgate:`)
//   <p><storage key>            the value, a binary-safe string (e.g.
//                               `certgate:certificates/acme-v02...-directory/blog.alice.com/cert.pem`)
//   <p>/index                   sorted set of every storage key, all with score 0 (see "list")
//   <p>/private                 set of the storage keys last put with `private: true`
//   <p>locks/<name>.lock        a held lock (locks.ts)
// `<p>/index` and `<p>/private` cannot collide with a storage key: a key never starts with '/'.
// The key rules (reserved `locks/`, internal names) are keys.ts', the same as the file backend's.
//
// list(prefix): an index, not SCAN. A sorted set whose members all have score 0 is ordered
// bytewise, so ZRANGEBYLEX [prefix .. [prefix\xff returns exactly the keys that start with
// `prefix` (UTF-8 never contains the byte 0xff) in O(log n + m), paged by continuing from the
// last member seen. SCAN MATCH would walk the whole key space for each list() call; the index
// makes the prefix a plain byte range, so `*?[` are just characters. put/delete change the value
// and the index (and the private set) in ONE Lua script (scripts.ts). Pages of a long list() are
// separate commands, so a key put or deleted during the listing may or may not appear (like a
// directory walk). Only list('locks/...') uses SCAN (locks expire by themselves, so they cannot
// be indexed cheaply); it is an admin operation, and its MATCH pattern escapes glob characters.
//
// Resilience: commands fail at once with StorageError ("Redis is unreachable") while Redis is
// down, and every command has a time limit (commandTimeoutMs). node-redis' Sentinel client
// retries internally while the master is unreachable instead of failing, so in Sentinel mode
// commands are refused at once while the master connection is known to be down, until a
// background PING gets an answer (through a failover or the same master).

import { ClientClosedError, ClientOfflineError, ConnectionTimeoutError, ErrorReply, type RedisArgument } from 'redis';

import type { Logger } from '../../util/log.ts';
import { assertValidChannel, deliverSafely, type ClusterBus } from '../bus.ts';
import { assertReadableKey, assertWritableKey, isLocksPrefix, LOCK_SUFFIX, LOCKS_DIR, splitListPrefix } from '../keys.ts';
import {
  assertValidListOptions,
  pageOf,
  StorageError,
  type ListOptions,
  type Lock,
  type LockOptions,
  type PutEntry,
  type PutOptions,
  type Storage,
} from '../storage.ts';
import { busChannel, RedisSubscriptions } from './bus.ts';
import { CommandTimeout, ConnectionHealth, errorMessage, isConnectionError, withTimeout } from './connection.ts';
import { createDriver, type Driver, type RunCommand } from './drivers.ts';
import { RedisLocks } from './locks.ts';
import { resolveRedisOptions, type RedisStorageOptions, type ResolvedOptions } from './options.ts';
import { DELETE, evalScript, PUT, type Script } from './scripts.ts';

const LIST_PAGE = 5_000;
const SCAN_COUNT = 1_000;

/**
 * Storage on Redis (standalone, Sentinel or Cluster), shared by every instance on it, and their
 * ClusterBus. Open it with RedisStorage.connect. Operations fail at once with a StorageError
 * while Redis is unreachable (wrap with retryStorageErrors where waiting is affordable); the
 * connection comes back by itself.
 */
export class RedisStorage implements Storage, ClusterBus {
  readonly description: string;
  /** The key prefix actually used (in cluster mode it carries a hash tag). */
  readonly prefix: string;

  readonly #driver: Driver;
  readonly #health: ConnectionHealth;
  readonly #subscriptions: RedisSubscriptions;
  readonly #locks: RedisLocks;
  readonly #reconnectListeners = new Set<() => void>();
  readonly #logger: Logger;
  readonly #commandTimeoutMs: number;
  readonly #indexKey: string;
  readonly #privateKey: string;
  #closed = false;
  #closing: Promise<void> | undefined;
  /**
   * Sentinel: refuse commands while the master is known to be down, and fail the ones in flight
   * when it goes down (node-redis would retry them until the time limit; see sentinelDriver).
   */
  readonly #gateWhileDown: boolean;
  readonly #inFlight = new Set<(err: Error) => void>();

  private constructor(opts: RedisStorageOptions, resolved: ResolvedOptions) {
    this.description = resolved.description;
    this.prefix = resolved.prefix;
    this.#logger = opts.logger;
    this.#commandTimeoutMs = resolved.commandTimeoutMs;
    this.#gateWhileDown = resolved.mode === 'sentinel';
    this.#indexKey = `${this.prefix}/index`;
    this.#privateKey = `${this.prefix}/private`;
    const probe =
      resolved.mode === 'sentinel'
        ? () => withTimeout(this.#driver.send(['PING'], undefined, false), this.#commandTimeoutMs, () => new CommandTimeout(this.#commandTimeoutMs))
        : undefined;
    this.#health = new ConnectionHealth(
      opts.logger,
      this.description,
      () => this.abortInFlight(),
      () => {
        this.#subscriptions.retryOrphans();
        for (const listener of [...this.#reconnectListeners]) deliverSafely(listener, '', 'reconnect', this.#logger);
      },
      probe,
    );
    this.#driver = createDriver(opts, resolved, this.#health);
    const run: RunCommand = (step, key, fn) => this.run(step, key, fn);
    this.#subscriptions = new RedisSubscriptions(this.#driver, run, opts.logger, () => this.#closed);
    this.#locks = new RedisLocks({ prefix: this.prefix, driver: this.#driver, run, subscriptions: this.#subscriptions, logger: opts.logger });
  }

  /** See ClusterBus.onReconnect: called each time the connection is back after an outage. */
  onReconnect(listener: () => void): () => void {
    this.#reconnectListeners.add(listener);
    return () => this.#reconnectListeners.delete(listener);
  }

  /**
   * Connects (both connections in standalone mode) and resolves once Redis answers. Fails with
   * StorageError (step 'config' for bad options, 'connect' when Redis is not reachable within
   * connectTimeoutMs) instead of waiting forever.
   */
  static async connect(opts: RedisStorageOptions): Promise<RedisStorage> {
    const resolved = resolveRedisOptions(opts);
    const storage = new RedisStorage(opts, resolved);
    try {
      await withTimeout(
        storage.#driver.connect(),
        resolved.connectTimeoutMs,
        () => new ConnectionTimeoutError(),
      );
      // A PING through the command path proves the whole chain (Sentinel discovery, cluster slots).
      await withTimeout(storage.#driver.send(['PING'], undefined, false), resolved.commandTimeoutMs, () => new CommandTimeout(resolved.commandTimeoutMs));
    } catch (err) {
      storage.#closed = true;
      storage.#health.stop();
      storage.#driver.destroy();
      throw new StorageError(
        `redis storage: cannot connect to ${resolved.description}: Redis is unreachable (${errorMessage(err)})`,
        '',
        'connect',
        { cause: err },
      );
    }
    storage.#health.arm();
    if (resolved.mode === 'cluster' && opts.prefix !== undefined && opts.prefix !== resolved.prefix) {
      opts.logger.info({ redis: resolved.description, prefix: resolved.prefix }, 'redis cluster: key prefix wrapped in a hash tag');
    }
    return storage;
  }

  // ---------------------------------------------------------------------------------------------
  // Keys and values

  async get(key: string): Promise<Buffer | null> {
    const redisKey = this.redisKey(key, assertReadableKey);
    const reply = await this.run('read', key, () => this.#driver.send(['GET', redisKey], redisKey, true));
    if (reply === null) return null;
    if (Buffer.isBuffer(reply)) return reply;
    throw new StorageError(`redis storage: read of ${JSON.stringify(key)} failed: unexpected reply`, key, 'read');
  }

  async put(key: string, value: Buffer | string, opts: PutOptions = {}): Promise<void> {
    const redisKey = this.redisKey(key, assertWritableKey);
    const data = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
    await this.script(PUT, [redisKey, this.#indexKey, this.#privateKey], [data, key, opts.private === true ? '1' : '0'], 'write', key);
  }

  /**
   * Every PUT script sent at once, in order: Redis runs one connection's commands in the order
   * sent, so the values become visible (and persisted) in that order. Every key checked first.
   */
  async putMany(entries: readonly PutEntry[]): Promise<void> {
    for (const { key } of entries) this.redisKey(key, assertWritableKey);
    await Promise.all(entries.map(({ key, value, opts }) => this.put(key, value, opts)));
  }

  async delete(key: string): Promise<void> {
    const redisKey = this.redisKey(key, assertWritableKey);
    await this.script(DELETE, [redisKey, this.#indexKey, this.#privateKey], [key], 'delete', key);
  }

  /** A page (`opts`) is one ZRANGEBYLEX ... LIMIT from the cursor, except below `locks/` (SCAN). */
  async list(prefix: string, opts?: ListOptions): Promise<string[]> {
    splitListPrefix(prefix);
    if (opts) assertValidListOptions(opts);
    if (isLocksPrefix(prefix)) {
      const keys = await this.listIndex(prefix);
      keys.push(...(await this.listLocks(prefix)));
      return pageOf([...new Set(keys)].sort(), opts);
    }
    // Without paging, the same order as the file backend (JavaScript's sort). A page comes in
    // Redis' byte order (UTF-8), which is the same for ASCII keys such as domain names; it may
    // differ for keys with characters beyond U+FFFF.
    if (!opts) return (await this.listIndex(prefix)).sort();
    if (opts.limit === 0) return [];
    return this.listIndex(prefix, opts.after, opts.limit);
  }

  // ---------------------------------------------------------------------------------------------
  // Locks (locks.ts)

  tryLock(name: string, opts: LockOptions): Promise<Lock | null> {
    return this.#locks.tryLock(name, opts);
  }

  lock(name: string, opts: LockOptions): Promise<Lock> {
    return this.#locks.lock(name, opts);
  }

  // ---------------------------------------------------------------------------------------------
  // Cluster bus (bus.ts)

  async publish(channel: string, message: string): Promise<void> {
    assertValidChannel(channel);
    await this.run('publish', channel, () => this.#driver.send(['PUBLISH', busChannel(this.prefix, channel), message], undefined, false));
  }

  async subscribe(channel: string, handler: (message: string) => void): Promise<() => Promise<void>> {
    assertValidChannel(channel);
    return this.#subscriptions.subscribe(busChannel(this.prefix, channel), (message) => deliverSafely(handler, message, channel, this.#logger), 'subscribe', channel);
  }

  // ---------------------------------------------------------------------------------------------

  /** Quits the connections (waiting for commands in flight). Held locks stay until they expire. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#closed = true;
      this.#health.stop();
      this.#locks.wakeAll();
      try {
        await withTimeout(this.#driver.close(), this.#commandTimeoutMs, () => new CommandTimeout(this.#commandTimeoutMs));
      } catch (err) {
        this.#logger.debug({ redis: this.description, err: errorMessage(err) }, 'redis: close failed; dropping the connections');
        this.#driver.destroy();
      }
    })();
    return this.#closing;
  }

  // ---------------------------------------------------------------------------------------------
  // Internals

  /** The Redis key of `key`, once `rule` (readable or writable, keys.ts) accepted it. */
  private redisKey(key: string, rule: (key: string) => void): string {
    rule(key);
    return this.prefix + key;
  }

  /** Runs one Redis round trip with the command time limit, mapping failures to StorageError. */
  private async run<T>(step: string, key: string, fn: () => Promise<T>): Promise<T> {
    if (this.#closed) {
      throw new StorageError(`redis storage: ${step} of ${JSON.stringify(key)} failed: the storage is closed`, key, step);
    }
    let abort: ((err: Error) => void) | undefined;
    try {
      if (this.#gateWhileDown && this.#health.isDown) throw new ClientOfflineError();
      const work = withTimeout(fn(), this.#commandTimeoutMs, () => new CommandTimeout(this.#commandTimeoutMs));
      if (!this.#gateWhileDown) return await work;
      const aborted = new Promise<never>((_, reject) => {
        abort = reject;
        this.#inFlight.add(reject);
      });
      return await Promise.race([work, aborted]);
    } catch (err) {
      throw this.fail(err, key, step);
    } finally {
      if (abort) this.#inFlight.delete(abort);
    }
  }

  private fail(err: unknown, key: string, step: string): StorageError {
    if (err instanceof StorageError) return err;
    let reason: string;
    if (err instanceof ErrorReply) reason = `Redis replied with an error: ${err.message}`;
    else if (this.#closed && err instanceof ClientClosedError) reason = 'the storage is closed';
    else if (isConnectionError(err)) reason = `Redis is unreachable (${errorMessage(err)})`;
    else reason = errorMessage(err);
    return new StorageError(`redis storage: ${step} of ${JSON.stringify(key)} failed: ${reason}`, key, step, { cause: err });
  }


  /** Runs a Lua script (scripts.ts) as one command, with the time limit and error mapping of run(). */
  private script(script: Script, keys: string[], args: RedisArgument[], step: string, key: string): Promise<unknown> {
    return this.run(step, key, () => evalScript(this.#driver, script, keys, args));
  }

  /** Keys starting with `prefix`, after `after` (exclusive), at most `limit` (default: all). */
  private async listIndex(prefix: string, after?: string, limit?: number): Promise<string[]> {
    const bytes = Buffer.from(prefix, 'utf8');
    const max: RedisArgument = prefix === '' ? '+' : Buffer.concat([Buffer.from('['), bytes, Buffer.from([0xff])]);
    let min: RedisArgument = prefix === '' ? '-' : Buffer.concat([Buffer.from('['), bytes]);
    // A cursor before the prefix's range changes nothing; one after it leaves min > max (empty).
    if (after !== undefined && after >= prefix) min = Buffer.concat([Buffer.from('('), Buffer.from(after, 'utf8')]);
    const keys: string[] = [];
    for (;;) {
      const want = limit === undefined ? LIST_PAGE : Math.min(LIST_PAGE, limit - keys.length);
      const page = await this.run('list', prefix, () =>
        this.#driver.send(['ZRANGEBYLEX', this.#indexKey, min, max, 'LIMIT', '0', String(want)], this.#indexKey, false),
      );
      if (!Array.isArray(page)) throw new StorageError(`redis storage: list of ${JSON.stringify(prefix)} failed: unexpected reply`, prefix, 'list');
      for (const member of page) keys.push(String(member));
      const last = keys[keys.length - 1];
      if (page.length < want || last === undefined || (limit !== undefined && keys.length >= limit)) return keys;
      min = Buffer.concat([Buffer.from('('), Buffer.from(last, 'utf8')]);
    }
  }

  /** Lock keys below `prefix` (which is `locks` or starts with `locks/`), by SCAN. */
  private async listLocks(prefix: string): Promise<string[]> {
    const below = prefix === LOCKS_DIR ? `${LOCKS_DIR}/` : prefix;
    const match = `${(this.prefix + below).replace(/[*?[\]\\]/g, '\\$&')}*`;
    const found: string[] = [];
    let cursor = '0';
    do {
      const reply = await this.run('list', prefix, () =>
        this.#driver.scan(['SCAN', cursor, 'MATCH', match, 'COUNT', String(SCAN_COUNT), 'TYPE', 'string'], this.#indexKey),
      );
      if (!Array.isArray(reply) || reply.length !== 2 || !Array.isArray(reply[1])) {
        throw new StorageError(`redis storage: list of ${JSON.stringify(prefix)} failed: unexpected SCAN reply`, prefix, 'list');
      }
      cursor = String(reply[0]);
      for (const raw of reply[1] as unknown[]) {
        const key = String(raw).slice(this.prefix.length);
        if (key.startsWith(below) && key.endsWith(LOCK_SUFFIX)) found.push(key);
      }
    } while (cursor !== '0');
    return found;
  }

  private abortInFlight(): void {
    if (!this.#gateWhileDown) return;
    for (const abort of this.#inFlight) abort(new ClientOfflineError());
    this.#inFlight.clear();
  }
}
