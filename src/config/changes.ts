// What a config reload (SIGHUP, SIGUSR2) changes, and which of it can apply to a running gateway:
//   1. both configs are flattened to their leaf keys ("proxy.routes", "onDemand.limits.global");
//      lists are leaves (a changed route list is one change)
//   2. a changed key is live when it is, or lies below, one of LIVE_KEYS (then that live key is
//      named); any other needs a restart
//   3. withLiveChanges: the running config with only the live keys taken from the new one, which
//      is what a reloaded process runs (and what a worker restarted later gets)
import type { Config } from './schema.ts';

/**
 * The keys a running gateway applies on reload (src/gateway/reload.ts does it, one part at a
 * time). Everything else (listen addresses, storage,
 * workers, acme, tls...) needs a restart.
 */
export const LIVE_KEYS: readonly string[] = [
  'proxy.routes',
  'proxy.upstream',
  'onDemand.allow',
  'onDemand.ask',
  'onDemand.askTimeout',
  'onDemand.askCacheTtl',
  'onDemand.askDenyCacheTtl',
  'onDemand.limits.perClient',
  'onDemand.limits.global',
  'log.level',
  'shutdownTimeout',
  'webhooks',
];

/** Where a config came from; never compared (the same file can move). */
const NOT_CONFIG = new Set(['baseDir', 'file']);

/** A reload's changed keys: `live` ones apply now, `restart` ones wait for a restart. */
export interface ConfigChanges {
  live: string[];
  restart: string[];
}

/** The changed leaf keys between two validated configs, split into live and needs-a-restart (both sorted). */
export function configChanges(running: Config, next: Config): ConfigChanges {
  const before = leaves(running);
  const after = leaves(next);
  const live = new Set<string>();
  const restart = new Set<string>();
  for (const key of new Set([...before.keys(), ...after.keys()])) {
    if (before.get(key) === after.get(key)) continue;
    // A live key is named as a whole ("onDemand.limits.global", not its rate and burst).
    const covering = liveKeyOf(key);
    if (covering) live.add(covering);
    else restart.add(key);
  }
  return { live: [...live].sort(), restart: [...restart].sort() };
}

/** Whether `key` is, or lies below, a live key. */
export function isLive(key: string): boolean {
  return liveKeyOf(key) !== undefined;
}

function liveKeyOf(key: string): string | undefined {
  return LIVE_KEYS.find((live) => key === live || key.startsWith(`${live}.`));
}

/**
 * `running` with every live key set as in `next` (absent in `next`: removed), the rest left as
 * it runs. Neither argument is changed.
 */
export function withLiveChanges<C extends Config>(running: C, next: Config): C {
  const merged = structuredClone(running);
  for (const key of LIVE_KEYS) {
    const path = key.split('.');
    const value = path.reduce<unknown>((at, part) => (isRecord(at) ? at[part] : undefined), next);
    const parent = path.slice(0, -1).reduce<unknown>((at, part) => (isRecord(at) ? at[part] : undefined), merged);
    if (!isRecord(parent)) continue;
    const last = path[path.length - 1]!;
    if (value === undefined) delete parent[last];
    else parent[last] = structuredClone(value);
  }
  return merged;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Leaf key → its value as JSON; objects are walked into, lists and scalars are leaves. */
function leaves(config: object): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (value: unknown, prefix: string): void => {
    if (isRecord(value)) {
      for (const [k, v] of Object.entries(value)) if (!(prefix === '' && NOT_CONFIG.has(k))) walk(v, prefix ? `${prefix}.${k}` : k);
      return;
    }
    if (value !== undefined) out.set(prefix, JSON.stringify(value));
  };
  walk(config, '');
  return out;
}
