// Redis storage backend, shared by many gateway instances. It is also their cluster bus (Redis
// pub/sub), so "certificate X changed" reaches every instance's memory cache.
//
// Key space (readable with redis-cli; <p> is the prefix, default `certgate:`)
//   <p><storage key>            the value, a binary-safe string (e.g.
//                               `certgate:certificates/acme-v02...-directory/blog.alice.com/cert.pem`)
//   <p>/index                   sorted set of every storage key, all with score 0 (see "list")
//   <p>/private                 set of the storage keys last put with `private: true`
//   <p>locks/<name>.lock        a held lock: JSON {token,pid,hostname,name,acquiredAt}, with PX expiry
// `<p>/index` and `<p>/private` cannot collide with a storage key: a key never starts with '/'.
// As in the file backend, `locks/` is reserved: put()/delete() refuse keys below it, get() and
// list('locks/') may read it (who holds what).
//
// Pub/sub channels (a separate namespace from keys)
//   <p>bus:<channel>            ClusterBus messages
//   <p>locks/<name>.lock        "released" notifications of one lock (the lock key's own name)
//
// list(prefix): an index, not SCAN. A sorted set whose members all have score 0 is ordered
// bytewise, so ZRANGEBYLEX [prefix .. [prefix\xff returns exactly the keys that start with
// `prefix` (UTF-8 never contains the byte 0xff) in O(log n + m), paged by continuing from the last
// member seen. SCAN MATCH would walk the whole key space (every certificate of every deployment
// sharing the Redis) for each list() call, and prefixes containing glob characters would need
// escaping; the index makes the prefix a plain byte range, so `*?[` are just characters.
// put/delete change the value and the index (and the private set) in ONE Lua script, which Redis
// runs atomically: a concurrent list() sees the key with its value or neither, there is no
// window where the index and the data disagree, and a crash mid-script is all-or-nothing (AOF
// replays the script's effects as one MULTI). Pages of a long list() are separate commands, so a
// key put or deleted during the listing may or may not appear (like a directory walk). Only
// list('locks/...') uses SCAN (locks expire by themselves, so they cannot be indexed cheaply); it
// is an admin operation, and its MATCH pattern escapes glob characters.
//
// Redis Cluster: a script may only touch keys of one hash slot. The prefix therefore carries a
// hash tag in cluster mode, and if the configured prefix has none it is wrapped in one
// (`certgate:` → `{certgate:}`; keys read `{certgate:}certificates/...`). All of a deployment's
// keys then live in one slot, on one master: the cluster gives this data failover, not
// sharding (100k certificates are a few hundred MB, fine for one node). Separate commands in a
// "safe order" were rejected: a put (ZADD, SET) racing a delete (DEL, ZREM) of the same key can
// leave a value that is not indexed, and no order of cross-slot commands prevents it.
//
// Locks: SET key value NX PX ttl; refresh = Lua compare-value-then-PEXPIRE; release = Lua
// compare-value-then-DEL-and-PUBLISH (so a stale holder never deletes a newer holder's lock and the
// notification goes out atomically with the delete). lock() waits without a tight polling loop:
// after a failed attempt it subscribes to the lock's channel, tries again (a release between the
// first attempt and the subscription is not missed), then sleeps until a release notification,
// the end of the holder's lease (PTTL: a holder that died is replaced as soon as its key
// expires), or a slow poll (pollMs, default 1 s, ±20 %), which covers a missed notification. Leases depend on Redis' clock only (PX), not on the hosts' clocks. A
// holder that stalls for longer than ttlMs loses the lock and learns it on its next refresh().
// If the SET NX reply is lost (connection dropped after Redis executed it), the lock may be held
// by nobody who knows it until it expires.
//
// Resilience: commands never queue while Redis is unreachable (`disableOfflineQueue`), so they
// fail at once with StorageError ("Redis is unreachable"); every command also has a time limit
// (commandTimeoutMs) for a server that accepts connections but does not answer. node-redis'
// Sentinel client retries internally while the master is unreachable instead of failing, so in
// Sentinel mode commands are refused at once while the master connection is known to be down,
// until a background PING gets an answer (through a failover or the same master). The clients
// reconnect by themselves (100 ms doubling to 2 s, plus jitter); one warn line is logged when the
// connection drops and one info line when it is back. node-redis re-subscribes every channel on
// reconnect; messages published while an instance was disconnected are lost for it.
//
// Operating Redis for this: the data is the only copy of certificates and account keys, so run
// Redis with persistence (AOF) and `maxmemory-policy noeviction` or a volatile-* one (allkeys-*
// could evict values or the index; only lock keys have an expiry). A value written without
// this class (e.g. by hand with redis-cli) is not in the index and is not listed.
//
// Connections: standalone uses two (commands, and a duplicate for subscriptions); Sentinel
// (node-redis `createSentinel`) and Cluster (`createCluster`) manage their own, including a
// dedicated pub/sub connection.

import { createHash, randomBytes } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import { hostname } from 'node:os';

import {
  ClientClosedError,
  ClientOfflineError,
  ConnectionTimeoutError,
  createClient,
  createCluster,
  createSentinel,
  ErrorReply,
  RESP_TYPES,
  RootNodesUnavailableError,
  SocketClosedUnexpectedlyError,
  TimeoutError,
  type RedisArgument,
} from 'redis';

import type { Logger } from '../../log.ts';
import { assertValidChannel, deliverSafely, type ClusterBus } from '../bus.ts';
import {
  assertValidKey,
  assertValidListOptions,
  HeldLock,
  pageOf,
  resolveLockOptions,
  StorageError,
  type ListOptions,
  type Lock,
  type LockOptions,
  type PutOptions,
  type Storage,
} from '../storage.ts';

export interface RedisStorageOptions {
  /** redis://[user:pass@]host:port[/db], rediss:// for TLS. Default redis://127.0.0.1:6379. */
  url?: string;
  /** Key namespace, default 'certgate:'; several deployments can share a Redis. */
  prefix?: string;
  sentinel?: { name: string; sentinels: Array<{ host: string; port: number }>; password?: string };
  /** redis:// URLs of seed nodes. */
  cluster?: { rootNodes: string[] };
  logger: Logger;
  /** Default 5000: bounds each connection attempt and connect() as a whole. */
  connectTimeoutMs?: number;
  /** Default 5000: a command never hangs a caller forever. */
  commandTimeoutMs?: number;
}

const DEFAULT_URL = 'redis://127.0.0.1:6379';
const DEFAULT_PREFIX = 'certgate:';
const DEFAULT_TIMEOUT_MS = 5_000;
/** Fallback poll while waiting for a lock; release notifications normally wake waiters first. */
const DEFAULT_LOCK_POLL_MS = 1_000;
/** A waiter tries again this long after the holder's lease should have run out (PTTL rounding). */
const LEASE_END_MARGIN_MS = 5;
const LIST_PAGE = 5_000;
const SCAN_COUNT = 1_000;
/** How often to check whether a Sentinel-managed master is reachable again. */
const PROBE_INTERVAL_MS = 500;

const LOCKS_DIR = 'locks';
const LOCK_SUFFIX = '.lock';
const RELEASED = 'released';

/**
 * Names the file backend reserves for its temp and guard files. Rejected here too, so that every
 * key one backend accepts the other accepts as well (data can be migrated either way).
 */
const INTERNAL_NAME = /^\.[^]*(?:\.[0-9a-f]{16}\.(?:tmp|stale)|\.lock\.break)$/;

const BUFFERS = { typeMapping: { [RESP_TYPES.BLOB_STRING]: Buffer } } as const;

/** Reconnect backoff: 100 ms doubling to 2 s, plus up to 100 ms of jitter. */
function reconnectDelay(retries: number): number {
  return Math.min(100 * 2 ** Math.min(retries, 10), 2_000) + Math.floor(Math.random() * 100);
}

class Script {
  readonly sha: string;
  constructor(readonly source: string) {
    this.sha = createHash('sha1').update(source).digest('hex');
  }
}

// KEYS[1] value key, KEYS[2] index, KEYS[3] private set; ARGV[1] value, ARGV[2] storage key,
// ARGV[3] '1' when private.
const PUT = new Script(`
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], 0, ARGV[2])
if ARGV[3] == '1' then redis.call('SADD', KEYS[3], ARGV[2]) else redis.call('SREM', KEYS[3], ARGV[2]) end
return 1
`);

// KEYS as for PUT; ARGV[1] storage key.
const DELETE = new Script(`
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[1])
return 1
`);

// KEYS[1] lock key; ARGV[1] our value, ARGV[2] ttl in ms.
const REFRESH = new Script(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`);

// KEYS[1] lock key; ARGV[1] our value, ARGV[2] channel, ARGV[3] message.
const RELEASE = new Script(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], ARGV[3])
  return 1
end
return 0
`);

type PubSubListener = (message: string, channel: string) => void;

/** What RedisStorage needs from node-redis, the same for standalone, Sentinel and Cluster. */
interface Driver {
  /** `route`: a key whose hash slot picks the node (Cluster); ignored otherwise. */
  send(args: RedisArgument[], route: RedisArgument | undefined, buffers: boolean): Promise<unknown>;
  /** SCAN on the node that holds `route`'s slot (Cluster) or on the server. */
  scan(args: RedisArgument[], route: RedisArgument): Promise<unknown>;
  subscribe(channel: string, listener: PubSubListener): Promise<void>;
  unsubscribe(channel: string, listener: PubSubListener): Promise<void>;
  /**
   * False when the subscription connection is known to be down. node-redis queues (UN)SUBSCRIBE
   * while offline even with disableOfflineQueue, so this lets them fail fast too.
   */
  pubSubReady(): boolean;
  connect(): Promise<void>;
  close(): Promise<void>;
  destroy(): void;
}

export interface ResolvedOptions {
  mode: 'standalone' | 'sentinel' | 'cluster';
  description: string;
  prefix: string;
  connectTimeoutMs: number;
  commandTimeoutMs: number;
}

/** A command that got no answer in time. */
class CommandTimeout extends Error {
  constructor(ms: number) {
    super(`Redis did not answer within ${ms} ms`);
    this.name = 'CommandTimeout';
  }
}

function configError(message: string): StorageError {
  return new StorageError(`redis storage: ${message}`, '', 'config');
}

function positive(value: number | undefined, name: string): number {
  if (value === undefined) return DEFAULT_TIMEOUT_MS;
  if (!(Number.isFinite(value) && value > 0)) throw configError(`${name} must be a positive number of milliseconds`);
  return value;
}

function parseRedisUrl(url: string, what: string): URL {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw configError(`${what} is not a URL`);
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
    throw configError(`${what} must start with redis:// or rediss:// (got ${parsed.protocol}//)`);
  }
  if (parsed.hostname === '') throw configError(`${what} has no host`);
  return parsed;
}

function hostPort(url: URL): string {
  return `${url.hostname}:${url.port || '6379'}`;
}

/** True when `s` contains a Redis Cluster hash tag: the first '{' and a later '}' with something between. */
export function hasHashTag(s: string): boolean {
  const open = s.indexOf('{');
  if (open < 0) return false;
  const close = s.indexOf('}', open + 1);
  return close > open + 1;
}

/** Validates the options (no network); exported for tests and config checks. */
export function resolveRedisOptions(opts: RedisStorageOptions): ResolvedOptions {
  const modes = [opts.url, opts.sentinel, opts.cluster].filter((v) => v !== undefined).length;
  if (modes > 1) throw configError('set exactly one of url, sentinel or cluster');
  const connectTimeoutMs = positive(opts.connectTimeoutMs, 'connectTimeoutMs');
  const commandTimeoutMs = positive(opts.commandTimeoutMs, 'commandTimeoutMs');
  let prefix = opts.prefix ?? DEFAULT_PREFIX;
  if (typeof prefix !== 'string' || prefix.length > 256 || prefix.includes('\0')) {
    throw configError('prefix must be a string of at most 256 characters without NUL');
  }

  if (opts.cluster !== undefined) {
    const { rootNodes } = opts.cluster;
    if (!Array.isArray(rootNodes) || rootNodes.length === 0) throw configError('cluster.rootNodes must list at least one redis:// URL');
    const urls = rootNodes.map((u, i) => parseRedisUrl(u, `cluster.rootNodes[${i}]`));
    if (prefix === '') throw configError('cluster mode needs a non-empty prefix (it becomes the hash tag)');
    if (!hasHashTag(prefix)) prefix = `{${prefix}}`;
    if (!hasHashTag(prefix)) throw configError(`prefix ${JSON.stringify(opts.prefix)} cannot be turned into a hash tag`);
    return {
      mode: 'cluster',
      description: `redis:cluster:${urls.map(hostPort).join(',')}/${prefix}`,
      prefix,
      connectTimeoutMs,
      commandTimeoutMs,
    };
  }
  if (opts.sentinel !== undefined) {
    const { name, sentinels } = opts.sentinel;
    if (typeof name !== 'string' || name === '') throw configError('sentinel.name must be the monitored master name');
    if (!Array.isArray(sentinels) || sentinels.length === 0) throw configError('sentinel.sentinels must list at least one host and port');
    for (const [i, s] of sentinels.entries()) {
      if (typeof s.host !== 'string' || s.host === '' || !Number.isInteger(s.port) || s.port < 1 || s.port > 65535) {
        throw configError(`sentinel.sentinels[${i}] must be { host, port } with a port in 1-65535`);
      }
    }
    return {
      mode: 'sentinel',
      description: `redis:sentinel:${name}@${sentinels.map((s) => `${s.host}:${s.port}`).join(',')}/${prefix}`,
      prefix,
      connectTimeoutMs,
      commandTimeoutMs,
    };
  }
  const url = parseRedisUrl(opts.url ?? DEFAULT_URL, 'url');
  return { mode: 'standalone', description: `redis:${hostPort(url)}/${prefix}`, prefix, connectTimeoutMs, commandTimeoutMs };
}

function errorMessage(err: unknown): string {
  if (err instanceof AggregateError && err.errors.length > 0) return err.errors.map(errorMessage).join('; ');
  return err instanceof Error ? err.message || err.name : String(err);
}

/** Errors that mean "no usable connection to Redis" rather than "Redis refused the command". */
function isConnectionError(err: unknown): boolean {
  return (
    err instanceof ClientOfflineError ||
    err instanceof ClientClosedError ||
    err instanceof SocketClosedUnexpectedlyError ||
    err instanceof ConnectionTimeoutError ||
    err instanceof RootNodesUnavailableError ||
    err instanceof TimeoutError ||
    err instanceof CommandTimeout ||
    (err instanceof Error && 'code' in err && typeof err.code === 'string' && /^E[A-Z]+$/.test(err.code)) ||
    err instanceof AggregateError
  );
}

/** Races `promise` against a timer; the loser's outcome is ignored (the race handles it). */
async function withTimeout<T>(promise: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}


/**
 * Tracks which connections are down, to log one warn line when the first drops and one info
 * line when the last is back, however many reconnect attempts happen in between.
 */
class ConnectionHealth {
  readonly #down = new Map<string, string>();
  #downSince = 0;
  #armed = false;
  #stopped = false;
  #probeTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly logger: Logger,
    private readonly redis: string,
    private readonly onDown: () => void,
    private readonly onRestored: () => void,
    /** For drivers without reliable "ready" events (Sentinel): resolves once Redis answers. */
    private readonly probe?: () => Promise<unknown>,
  ) {}

  /** Called once the initial connection is up; events before that belong to connect(). */
  arm(): void {
    this.#armed = true;
    this.#down.clear();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#probeTimer);
  }

  get isDown(): boolean {
    return this.#down.size > 0;
  }

  error(source: string, err: unknown): void {
    if (this.#stopped) return;
    this.logger.debug({ redis: this.redis, connection: source, err: errorMessage(err) }, 'redis connection error');
  }

  down(source: string, reason: string): void {
    if (!this.#armed || this.#stopped || this.#down.has(source)) return;
    this.#down.set(source, reason);
    if (this.#down.size > 1) return;
    this.#downSince = Date.now();
    this.logger.warn(
      { redis: this.redis, connection: source, err: reason },
      'Redis connection lost; reconnecting in the background, storage operations fail until it is back',
    );
    this.onDown();
    if (this.probe) this.scheduleProbe();
  }

  up(source: string): void {
    if (!this.#down.delete(source) || this.#down.size > 0) return;
    this.restored();
  }

  private restored(): void {
    this.#down.clear();
    clearTimeout(this.#probeTimer);
    if (this.#stopped) return;
    this.logger.info({ redis: this.redis, downMs: Date.now() - this.#downSince }, 'Redis connection restored');
    this.onRestored();
  }

  private scheduleProbe(): void {
    clearTimeout(this.#probeTimer);
    this.#probeTimer = setTimeout(() => {
      if (this.#stopped || !this.isDown || !this.probe) return;
      this.probe().then(
        () => this.restored(),
        () => this.scheduleProbe(),
      );
    }, PROBE_INTERVAL_MS);
    this.#probeTimer.unref();
  }
}

/** Wires a node-redis client's events to the health tracker. */
function watchClient(client: EventEmitter, source: string, health: ConnectionHealth): void {
  let lastError = 'connection closed';
  client.on('error', (err: unknown) => {
    lastError = errorMessage(err);
    health.error(source, err);
  });
  client.on('reconnecting', () => health.down(source, lastError));
  client.on('ready', () => health.up(source));
}

function socketOptions(connectTimeoutMs: number) {
  return { connectTimeout: connectTimeoutMs, reconnectStrategy: reconnectDelay };
}

function standaloneDriver(url: string, resolved: ResolvedOptions, health: ConnectionHealth): Driver {
  const client = createClient({
    url,
    name: 'certgate',
    disableOfflineQueue: true,
    socket: socketOptions(resolved.connectTimeoutMs),
  });
  const subscriber = client.duplicate({ name: 'certgate-sub' });
  watchClient(client, 'commands', health);
  watchClient(subscriber, 'subscriptions', health);
  return {
    send: (args, _route, buffers) => client.sendCommand(args, buffers ? BUFFERS : undefined),
    scan: (args) => client.sendCommand(args),
    subscribe: (channel, listener) => subscriber.subscribe(channel, listener),
    unsubscribe: (channel, listener) => subscriber.unsubscribe(channel, listener),
    pubSubReady: () => subscriber.isReady,
    async connect() {
      await Promise.all([client.connect(), subscriber.connect()]);
    },
    async close() {
      await Promise.all([client.close(), subscriber.close()]);
    },
    destroy() {
      client.destroy();
      subscriber.destroy();
    },
  };
}

function sentinelDriver(opts: NonNullable<RedisStorageOptions['sentinel']>, resolved: ResolvedOptions, health: ConnectionHealth): Driver {
  const socket = socketOptions(resolved.connectTimeoutMs);
  const sentinel = createSentinel({
    name: opts.name,
    sentinelRootNodes: opts.sentinels.map(({ host, port }) => ({ host, port })),
    // The password is the data nodes'; Sentinels are usually not password-protected, and
    // sending AUTH to one that has no password fails the connection.
    nodeClientOptions: { disableOfflineQueue: true, socket, ...(opts.password !== undefined ? { password: opts.password } : {}) },
    sentinelClientOptions: { socket },
    // Errors of the master connection reach us as 'error' events ("Master Client (h:p): ...").
    passthroughClientErrorEvents: true,
  });
  let lastError = 'connection closed';
  sentinel.on('error', (err: unknown) => {
    lastError = errorMessage(err);
    health.error('sentinel', err);
    // node-redis' Sentinel client does not fail commands while the master is unreachable: it
    // rediscovers and retries until the command time limit. Marking the master down makes
    // RedisStorage fail fast until a probe gets an answer again.
    if (lastError.startsWith('Master Client')) health.down('master', lastError);
  });
  sentinel.on('reconnecting', () => health.down('sentinel', lastError));
  sentinel.on('ready', () => health.up('sentinel'));
  return {
    send: (args, _route, buffers) => sentinel.sendCommand(false, args, buffers ? BUFFERS : undefined),
    scan: (args) => sentinel.sendCommand(false, args),
    subscribe: async (channel, listener) => {
      await sentinel.subscribe(channel, listener);
    },
    unsubscribe: async (channel, listener) => {
      // node-redis 6 types this listener as PubSubListener<boolean>; ours is the string kind.
      await sentinel.unsubscribe(channel, listener as Parameters<typeof sentinel.unsubscribe>[1], false);
    },
    // The pub/sub connection is internal to the Sentinel client; rely on the command time limit.
    pubSubReady: () => true,
    async connect() {
      await sentinel.connect();
    },
    async close() {
      await sentinel.close();
    },
    destroy() {
      sentinel.destroy().catch(() => {});
    },
  };
}

function clusterDriver(rootNodes: string[], resolved: ResolvedOptions, health: ConnectionHealth): Driver {
  // Discovered nodes get their settings from `defaults` only, so the credentials and TLS of the
  // first root node are copied there.
  const first = new URL(rootNodes[0] ?? DEFAULT_URL);
  const credentials = {
    ...(first.username !== '' ? { username: decodeURIComponent(first.username) } : {}),
    ...(first.password !== '' ? { password: decodeURIComponent(first.password) } : {}),
  };
  const base = socketOptions(resolved.connectTimeoutMs);
  const cluster = createCluster({
    rootNodes: rootNodes.map((url) => ({ url })),
    defaults: {
      ...credentials,
      disableOfflineQueue: true,
      socket: first.protocol === 'rediss:' ? { ...base, tls: true as const } : base,
    },
  });
  let lastError = 'connection closed';
  cluster.on('error', (err: unknown) => {
    lastError = errorMessage(err);
    health.error('cluster', err);
  });
  type NodeInfo = { host?: string; port?: number };
  const nodeName = (info: NodeInfo | undefined): string => `node ${info?.host ?? '?'}:${info?.port ?? '?'}`;
  cluster.on('node-error', (err: unknown, info: NodeInfo) => {
    lastError = errorMessage(err);
    health.error(nodeName(info), err);
  });
  cluster.on('node-reconnecting', (info: NodeInfo) => health.down(nodeName(info), lastError));
  cluster.on('node-ready', (info: NodeInfo) => health.up(nodeName(info)));
  return {
    send: (args, route, buffers) => cluster.sendCommand(route, false, args, buffers ? BUFFERS : undefined),
    // Cluster SCAN through the cluster client walks every master; the prefix's keys all live
    // in the slot of its hash tag, so only that node is scanned.
    scan: async (args, route) => (await cluster.getNodeClientForKey(route)).sendCommand(args),
    subscribe: (channel, listener) => cluster.subscribe(channel, listener),
    unsubscribe: (channel, listener) => cluster.unsubscribe(channel, listener as Parameters<typeof cluster.unsubscribe>[1], false),
    pubSubReady: () => cluster.pubSubNode?.client.isReady ?? true,
    async connect() {
      await cluster.connect();
    },
    async close() {
      await cluster.close();
    },
    destroy() {
      cluster.destroy();
    },
  };
}

interface LockTarget {
  name: string;
  /** The Redis key, also the channel its release notifications are published on. */
  key: string;
}

/** A one-shot "something happened" flag a waiter can sleep on with a time limit. */
class Waker {
  #pending = false;
  #wake: (() => void) | undefined;

  wake(): void {
    this.#pending = true;
    this.#wake?.();
  }

  reset(): void {
    this.#pending = false;
  }

  wait(ms: number): Promise<void> {
    if (this.#pending) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#wake = done;
    });
  }
}

export class RedisStorage implements Storage, ClusterBus {
  readonly description: string;
  /** The key prefix actually used (in cluster mode it carries a hash tag). */
  readonly prefix: string;

  readonly #driver: Driver;
  readonly #health: ConnectionHealth;
  readonly #reconnectListeners = new Set<() => void>();
  readonly #logger: Logger;
  readonly #commandTimeoutMs: number;
  readonly #indexKey: string;
  readonly #privateKey: string;
  /** Lock waiters, woken by close() so they fail at once instead of after their poll. */
  readonly #waiters = new Set<Waker>();
  /** Unsubscriptions that failed (Redis was down); retried when the connection is back. */
  #orphans: Array<{ channel: string; listener: PubSubListener }> = [];
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
        this.retryOrphans();
        for (const listener of [...this.#reconnectListeners]) deliverSafely(listener, '', 'reconnect', this.#logger);
      },
      probe,
    );
    if (resolved.mode === 'cluster') {
      this.#driver = clusterDriver(opts.cluster?.rootNodes ?? [], resolved, this.#health);
    } else if (resolved.mode === 'sentinel' && opts.sentinel !== undefined) {
      this.#driver = sentinelDriver(opts.sentinel, resolved, this.#health);
    } else {
      this.#driver = standaloneDriver(opts.url ?? DEFAULT_URL, resolved, this.#health);
    }
  }

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
    const redisKey = this.keyOf(key);
    const reply = await this.run('read', key, () => this.#driver.send(['GET', redisKey], redisKey, true));
    if (reply === null) return null;
    if (Buffer.isBuffer(reply)) return reply;
    throw new StorageError(`redis storage: read of ${JSON.stringify(key)} failed: unexpected reply`, key, 'read');
  }

  async put(key: string, value: Buffer | string, opts: PutOptions = {}): Promise<void> {
    const redisKey = this.writableKeyOf(key);
    const data = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
    await this.script(PUT, [redisKey, this.#indexKey, this.#privateKey], [data, key, opts.private === true ? '1' : '0'], 'write', key);
  }

  async delete(key: string): Promise<void> {
    const redisKey = this.writableKeyOf(key);
    await this.script(DELETE, [redisKey, this.#indexKey, this.#privateKey], [key], 'delete', key);
  }

  /** A page (`opts`) is one ZRANGEBYLEX ... LIMIT from the cursor, except below `locks/` (SCAN). */
  async list(prefix: string, opts?: ListOptions): Promise<string[]> {
    this.validateListPrefix(prefix);
    if (opts) assertValidListOptions(opts);
    if (prefix === LOCKS_DIR || prefix.startsWith(`${LOCKS_DIR}/`)) {
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
  // Locks

  async tryLock(name: string, opts: LockOptions): Promise<Lock | null> {
    const { ttlMs } = resolveLockOptions(name, opts, DEFAULT_LOCK_POLL_MS);
    return this.acquire(this.lockTarget(name), ttlMs);
  }

  async lock(name: string, opts: LockOptions): Promise<Lock> {
    const { ttlMs, waitMs, pollMs } = resolveLockOptions(name, opts, DEFAULT_LOCK_POLL_MS);
    const target = this.lockTarget(name);
    const deadline = Date.now() + waitMs;
    const first = await this.acquire(target, ttlMs);
    if (first) return first;

    const waker = new Waker();
    const unsubscribe = await this.subscribeChannel(target.key, () => waker.wake(), 'lock', name).catch((err: unknown) => {
      // Without notifications the slow poll still gets the lock, just later.
      this.#logger.debug({ lock: name, err: errorMessage(err) }, 'redis lock: cannot subscribe to release notifications; polling');
      return undefined;
    });
    this.#waiters.add(waker);
    try {
      for (;;) {
        waker.reset();
        const lock = await this.acquire(target, ttlMs);
        if (lock) return lock;
        const remaining = deadline - Date.now();
        if (remaining <= 0) {
          throw new StorageError(
            `timed out after ${waitMs} ms waiting for lock ${JSON.stringify(name)}: it is ${await this.describeHolder(target)}`,
            name,
            'lock',
          );
        }
        // Wake when the holder's lease runs out, not up to a poll later: a dead holder's name is
        // taken over as soon as its lock expires.
        const expiresIn = await this.expiresIn(target);
        const poll = pollMs * (0.8 + Math.random() * 0.4);
        await waker.wait(Math.min(remaining, expiresIn === undefined ? poll : Math.min(poll, expiresIn + LEASE_END_MARGIN_MS)));
      }
    } finally {
      this.#waiters.delete(waker);
      await unsubscribe?.();
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Cluster bus

  async publish(channel: string, message: string): Promise<void> {
    assertValidChannel(channel);
    await this.run('publish', channel, () => this.#driver.send(['PUBLISH', this.busChannel(channel), message], undefined, false));
  }

  async subscribe(channel: string, handler: (message: string) => void): Promise<() => Promise<void>> {
    assertValidChannel(channel);
    return this.subscribeChannel(this.busChannel(channel), (message) => deliverSafely(handler, message, channel, this.#logger), 'subscribe', channel);
  }

  // ---------------------------------------------------------------------------------------------

  /** Quits the connections (waiting for commands in flight). Held locks stay until they expire. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#closed = true;
      this.#health.stop();
      for (const waker of this.#waiters) waker.wake();
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

  private keyOf(key: string): string {
    assertValidKey(key);
    if (key.split('/').some((part) => INTERNAL_NAME.test(part))) {
      throw new StorageError(`invalid storage key ${JSON.stringify(key)}: reserved internal file name`, key, 'validate-key');
    }
    return this.prefix + key;
  }

  private writableKeyOf(key: string): string {
    const redisKey = this.keyOf(key);
    if (key === LOCKS_DIR || key.startsWith(`${LOCKS_DIR}/`)) {
      throw new StorageError(`invalid storage key ${JSON.stringify(key)}: ${LOCKS_DIR}/ is reserved for locks`, key, 'validate-key');
    }
    return redisKey;
  }

  /** The same rules as the file backend: the part before the last '/' must be a valid key. */
  private validateListPrefix(prefix: string): void {
    const slash = prefix.lastIndexOf('/');
    const dirKey = slash < 0 ? '' : prefix.slice(0, slash);
    const namePrefix = prefix.slice(slash + 1);
    try {
      if (typeof prefix !== 'string') assertValidKey('');
      if (dirKey !== '') assertValidKey(dirKey);
      if (prefix.length > 1024 || prefix.startsWith('/') || namePrefix.includes('\\') || namePrefix.includes('\0')) {
        assertValidKey('');
      }
    } catch (err) {
      throw new StorageError(`invalid list prefix ${JSON.stringify(prefix)}`, prefix, 'validate-key', { cause: err });
    }
  }

  private lockTarget(name: string): LockTarget {
    try {
      assertValidKey(name);
      // Same rule as the file backend (where it avoids file name collisions), so lock names
      // valid on one backend are valid on the other.
      if (name.split('/').slice(0, -1).some((part) => part.endsWith(LOCK_SUFFIX))) assertValidKey('');
    } catch (err) {
      throw new StorageError(`invalid lock name ${JSON.stringify(name)}`, name, 'validate-key', { cause: err });
    }
    return { name, key: `${this.prefix}${LOCKS_DIR}/${name}${LOCK_SUFFIX}` };
  }

  private busChannel(channel: string): string {
    return `${this.prefix}bus:${channel}`;
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

  /** EVALSHA, falling back to EVAL when the server does not have the script cached yet. */
  private script(script: Script, keys: string[], args: RedisArgument[], step: string, key: string): Promise<unknown> {
    const tail: RedisArgument[] = [String(keys.length), ...keys, ...args];
    const route = keys[0];
    return this.run(step, key, async () => {
      try {
        return await this.#driver.send(['EVALSHA', script.sha, ...tail], route, false);
      } catch (err) {
        if (!(err instanceof ErrorReply) || !err.message.startsWith('NOSCRIPT')) throw err;
        return await this.#driver.send(['EVAL', script.source, ...tail], route, false);
      }
    });
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

  private async acquire(target: LockTarget, ttlMs: number): Promise<HeldLock | null> {
    const value = JSON.stringify({
      token: randomBytes(16).toString('hex'),
      pid: process.pid,
      hostname: hostname(),
      name: target.name,
      acquiredAt: Date.now(),
    });
    const reply = await this.run('lock', target.name, () =>
      this.#driver.send(['SET', target.key, value, 'NX', 'PX', String(ttlMs)], target.key, false),
    );
    if (reply !== 'OK') return null;
    return new HeldLock(
      target.name,
      () => this.refreshLock(target, value, ttlMs),
      () => this.releaseLock(target, value),
    );
  }

  private async refreshLock(target: LockTarget, value: string, ttlMs: number): Promise<void> {
    const reply = await this.script(REFRESH, [target.key], [value, String(ttlMs)], 'refresh', target.name);
    if (reply !== 1) {
      throw new StorageError(
        `lock lost: ${JSON.stringify(target.name)} expired or was taken over, now ${await this.describeHolder(target)}`,
        target.name,
        'refresh',
      );
    }
  }

  private async releaseLock(target: LockTarget, value: string): Promise<void> {
    // Not ours any more (expired, maybe taken over): nothing to do, and no notification.
    await this.script(RELEASE, [target.key], [value, target.key, RELEASED], 'release', target.name);
  }

  /** Milliseconds until the lock's lease runs out by Redis' clock (0: gone), or undefined if unknown. */
  private async expiresIn(target: LockTarget): Promise<number | undefined> {
    try {
      const pttl = Number(await this.run('lock', target.name, () => this.#driver.send(['PTTL', target.key], target.key, false)));
      if (pttl === -2) return 0;
      return pttl >= 0 ? pttl : undefined;
    } catch {
      return undefined; // the poll still gets there
    }
  }

  /** For error messages: who holds the lock now (best effort). */
  private async describeHolder(target: LockTarget): Promise<string> {
    try {
      const [raw, pttl] = await this.run('lock', target.name, () =>
        Promise.all([this.#driver.send(['GET', target.key], target.key, false), this.#driver.send(['PTTL', target.key], target.key, false)]),
      );
      if (raw === null || raw === undefined) return 'not held (it was just released)';
      let who = 'an unparseable lock value';
      try {
        const r = JSON.parse(String(raw)) as Record<string, unknown>;
        const token = typeof r.token === 'string' ? r.token.slice(0, 8) : '?';
        who = `pid ${String(r.pid)} on ${String(r.hostname)}, token ${token}…`;
      } catch {
        // keep the generic description
      }
      const ttl = Number(pttl);
      return `held by ${who} (${ttl >= 0 ? `expires in ${ttl} ms` : 'no expiry'})`;
    } catch (err) {
      return `held (holder unknown: ${errorMessage(err)})`;
    }
  }

  /**
   * Subscribes `onMessage` to a full channel name; resolves once Redis confirmed. The returned
   * function unsubscribes; it never throws, and if Redis is down the unsubscription is retried
   * on reconnect (the listener is silenced at once either way).
   */
  private async subscribeChannel(
    channel: string,
    onMessage: (message: string) => void,
    step: string,
    key: string,
  ): Promise<() => Promise<void>> {
    let active = true;
    const listener: PubSubListener = (message) => {
      if (active) onMessage(message);
    };
    try {
      await this.run(step, key, async () => {
        if (!this.#driver.pubSubReady()) throw new ClientOfflineError();
        await this.#driver.subscribe(channel, listener);
      });
    } catch (err) {
      active = false;
      void this.unsubscribeQuietly(channel, listener);
      throw err;
    }
    return async () => {
      if (!active) return;
      active = false;
      await this.unsubscribeQuietly(channel, listener);
    };
  }

  private async unsubscribeQuietly(channel: string, listener: PubSubListener): Promise<void> {
    if (this.#closed) return;
    if (!this.#driver.pubSubReady()) {
      // node-redis would queue it; the listener is silent already, so unsubscribe once back.
      this.#orphans.push({ channel, listener });
      return;
    }
    try {
      await this.run('unsubscribe', channel, () => this.#driver.unsubscribe(channel, listener));
    } catch (err) {
      if (this.#closed) return;
      this.#logger.debug({ channel, err: errorMessage(err) }, 'redis: unsubscribe failed; retrying after reconnect');
      this.#orphans.push({ channel, listener });
    }
  }

  private abortInFlight(): void {
    if (!this.#gateWhileDown) return;
    for (const abort of this.#inFlight) abort(new ClientOfflineError());
    this.#inFlight.clear();
  }

  private retryOrphans(): void {
    const orphans = this.#orphans;
    this.#orphans = [];
    for (const { channel, listener } of orphans) void this.unsubscribeQuietly(channel, listener);
  }
}

