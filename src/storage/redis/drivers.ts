// The three ways to reach Redis (one server, Sentinel, Cluster), behind one small Driver
// interface so RedisStorage does not care which. Connections: standalone uses two (commands, and
// a duplicate for subscriptions); Sentinel (node-redis `createSentinel`) and Cluster
// (`createCluster`) manage their own, including a dedicated pub/sub connection. Commands never
// queue while Redis is unreachable (`disableOfflineQueue`): they fail at once.
import { createClient, createCluster, createSentinel, RESP_TYPES, type RedisArgument } from 'redis';

import { errorMessage, reconnectDelay, watchClient, type ConnectionHealth } from './connection.ts';
import { DEFAULT_URL, type RedisStorageOptions, type ResolvedOptions } from './options.ts';

const BUFFERS = { typeMapping: { [RESP_TYPES.BLOB_STRING]: Buffer } } as const;

/** A pub/sub message handler as node-redis calls it. */
export type PubSubListener = (message: string, channel: string) => void;

/** What RedisStorage needs from node-redis, the same for standalone, Sentinel and Cluster. */
export interface Driver {
  /** `route`: a key whose hash slot picks the node (Cluster); ignored otherwise. */
  send(args: RedisArgument[], route: RedisArgument | undefined, buffers: boolean): Promise<unknown>;
  /** SCAN on the node that holds `route`'s slot (Cluster) or on the server. */
  scan(args: RedisArgument[], route: RedisArgument): Promise<unknown>;
  /** Resolves once Redis confirmed the subscription. */
  subscribe(channel: string, listener: PubSubListener): Promise<void>;
  /** Removes this listener; node-redis unsubscribes the channel when it was the last. */
  unsubscribe(channel: string, listener: PubSubListener): Promise<void>;
  /**
   * False when the subscription connection is known to be down. node-redis queues (UN)SUBSCRIBE
   * while offline even with disableOfflineQueue, so this lets them fail fast too.
   */
  pubSubReady(): boolean;
  /** Opens every connection; rejects (or never settles: callers bound it with a time limit) when Redis is unreachable. */
  connect(): Promise<void>;
  /** Quits gracefully, waiting for commands in flight. */
  close(): Promise<void>;
  /** Drops the connections at once (after a failed connect or close). */
  destroy(): void;
}

/**
 * Runs one round trip as RedisStorage does: with the command time limit, failing at once while
 * Redis is known to be down, every failure a StorageError naming `key` and `step`.
 */
export type RunCommand = <T>(step: string, key: string, fn: () => Promise<T>) => Promise<T>;

function socketOptions(connectTimeoutMs: number) {
  return { connectTimeout: connectTimeoutMs, reconnectStrategy: reconnectDelay };
}

/** The driver for `resolved.mode`; connection events go to `health`. Nothing connects before driver.connect(). */
export function createDriver(opts: RedisStorageOptions, resolved: ResolvedOptions, health: ConnectionHealth): Driver {
  if (resolved.mode === 'cluster') return clusterDriver(opts.cluster?.rootNodes ?? [], resolved, health);
  if (resolved.mode === 'sentinel' && opts.sentinel !== undefined) return sentinelDriver(opts.sentinel, resolved, health);
  return standaloneDriver(opts.url ?? DEFAULT_URL, resolved, health);
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
