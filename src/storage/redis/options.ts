// The Redis backend's options: which Redis (one server, Sentinel or Cluster), the key prefix
// and the time limits, checked before any connection is made. In cluster mode the prefix must
// carry a hash tag (every key of a deployment in one slot, so one Lua script can touch the value
// and the index); a prefix without one is wrapped in one (`certgate:` -> `{certgate:}`).
import type { Logger } from '../../util/log.ts';
import { StorageError } from '../storage.ts';

/** What RedisStorage.connect takes (the `storage.redis` config section plus a logger). Set at most one of url, sentinel, cluster. */
export interface RedisStorageOptions {
  /** redis://[user:pass@]host:port[/db], rediss:// for TLS. Default redis://127.0.0.1:6379. */
  url?: string;
  /** Key namespace, default 'certgate:'; several deployments can share a Redis. */
  prefix?: string;
  /** Redis Sentinel: the monitored master's name, the Sentinels, and the data nodes' password (not sent to Sentinels). */
  sentinel?: { name: string; sentinels: Array<{ host: string; port: number }>; password?: string };
  /** redis:// URLs of seed nodes. */
  cluster?: { rootNodes: string[] };
  /** Connection lost/restored lines (one each per outage) and debug details. */
  logger: Logger;
  /** Default 5000: bounds each connection attempt and connect() as a whole. */
  connectTimeoutMs?: number;
  /** Default 5000: a command never hangs a caller forever. */
  commandTimeoutMs?: number;
}

/** The Redis of a standalone setup when neither url, sentinel nor cluster is given. */
export const DEFAULT_URL = 'redis://127.0.0.1:6379';
const DEFAULT_PREFIX = 'certgate:';
const DEFAULT_TIMEOUT_MS = 5_000;

/** Options after resolveRedisOptions: the mode, the prefix actually used, the time limits. */
export interface ResolvedOptions {
  /** Which driver connects (drivers.ts). */
  mode: 'standalone' | 'sentinel' | 'cluster';
  /** For logs and errors, e.g. `redis:127.0.0.1:6379/certgate:` (no password). */
  description: string;
  /** The key prefix actually used: in cluster mode wrapped in a hash tag when it had none. */
  prefix: string;
  /** Bound on each connection attempt and on connect() as a whole. */
  connectTimeoutMs: number;
  /** Bound on every command. */
  commandTimeoutMs: number;
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
