// `workers: N`: a primary process forks N workers with node:cluster. Each worker binds the
// listening ports itself with SO_REUSEPORT (`exclusive` + `reusePort`), so the kernel spreads
// connections and the primary never touches traffic; the primary only restarts workers that
// die and relays bus messages between them (cache coherence on file storage) and metrics
// snapshots to the worker serving GET /metrics. Workers get the validated config from the
// primary (src/cluster/worker.ts), not by reading the file again; a reload (SIGHUP) reaches
// them the same way, and a rolling restart (SIGUSR2) replaces them one at a time (replace()).
import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import type { MetricsSnapshot, PeerSnapshots } from '../admin/metrics.ts';
import type { LoadedConfig } from '../config/load.ts';
import type { Logger } from '../util/log.ts';
import { LocalBus, type ClusterBus } from '../storage/bus.ts';
import { workerExecArgv } from './young-generation.ts';

/**
 * What `workers: auto` means on a machine with `cpus` CPUs this process may use: one per CPU,
 * except one single process (no primary) on 2 CPUs or fewer. There a primary and a worker per
 * CPU cost ~65 MiB each before any certificate, and each worker fills its own cache and hot
 * contexts (its own ~40 MiB per 1,000 names), for a throughput gain the shared cores mostly eat.
 */
export function autoWorkerCount(cpus = availableParallelism()): number {
  return cpus <= 2 ? 1 : cpus;
}

/** How many gateway processes `workers` asks for (`auto`: see autoWorkerCount); `cpus` is for tests. */
export function workerCount(config: Pick<LoadedConfig, 'workers'>, cpus = availableParallelism()): number {
  return config.workers === 'auto' ? autoWorkerCount(cpus) : config.workers;
}

interface BusMessage {
  certgate: 'bus';
  channel: string;
  message: string;
}
interface ReadyMessage {
  certgate: 'ready';
  httpsPort: number;
  httpPort: number;
}
interface ConfigMessage {
  certgate: 'config';
  config: LoadedConfig;
}
/** Primary → every worker: a reloaded config to apply live (Gateway.reload). */
interface ReloadMessage {
  certgate: 'reload';
  config: LoadedConfig;
}
/** A worker asks once it listens: a message sent before that would be dropped. */
interface ConfigRequest {
  certgate: 'config-request';
}
/** The worker serving GET /metrics asks for the others' snapshots (`id` matches the reply). */
interface MetricsRequest {
  certgate: 'metrics-request';
  id: number;
}
/** A worker's answer to the primary's `metrics-collect`; null when it could not take one. */
interface MetricsReport {
  certgate: 'metrics-report';
  id: number;
  snapshot: MetricsSnapshot | null;
}
/** Primary → the other workers. */
interface MetricsCollect {
  certgate: 'metrics-collect';
  id: number;
}
/** Primary → the asking worker. */
interface MetricsReply extends PeerSnapshots {
  certgate: 'metrics-reply';
  id: number;
}
type WorkerMessage = BusMessage | ReadyMessage | ConfigRequest | MetricsRequest | MetricsReport;
type PrimaryMessage = ConfigMessage | ReloadMessage | BusMessage | MetricsCollect | MetricsReply;

/** How long the primary waits for the workers' snapshots before answering without the late ones. */
const METRICS_COLLECT_TIMEOUT_MS = 2000;

function isWorkerMessage(m: unknown): m is WorkerMessage {
  return typeof m === 'object' && m !== null && 'certgate' in m;
}

function isPrimaryMessage<K extends PrimaryMessage['certgate']>(m: unknown, kind: K): m is Extract<PrimaryMessage, { certgate: K }> {
  return typeof m === 'object' && m !== null && (m as { certgate?: unknown }).certgate === kind;
}

/** The primary process's handle on its workers (see forkWorkers). */
export interface Primary {
  /** Gives the workers the validated config: the ones that asked already, and any restarted later. */
  configure(config: LoadedConfig): void;
  /** Logs through `logger` from now on; resolves once every worker is listening. */
  run(logger: Logger): Promise<void>;
  /** Sends a reloaded config to every worker (they apply its live keys); workers forked later get it too. */
  reload(config: LoadedConfig): void;
  /**
   * Rolling restart (SIGUSR2): for each worker in turn, forks its replacement with `config`,
   * waits until it listens, then stops the old one the SIGTERM way (it drains) and waits for it
   * to exit. Resolves with the number replaced; stops early (logged) when a replacement dies
   * before it listens (the old worker keeps serving) or the primary is stopping. A call while
   * one is under way returns that one (its config stays).
   */
  replace(config: LoadedConfig): Promise<number>;
  /** Stops the workers: SIGTERM (they drain for up to `shutdownTimeout`), SIGKILL 5 s after that. */
  stop(): Promise<void>;
}

/** How long after `shutdownTimeout` a worker that has not exited yet is killed. */
export const STOP_MARGIN_MS = 5000;

/**
 * The workers a config asks for, read from the file's content before it is validated, so that
 * the primary can fork them first and validate while they load the gateway's modules. Undefined
 * when the value is not plainly valid: then the primary validates first (and reports it).
 * Mirrors `workers` in src/config/schema.ts (default "auto", 1-256); `cpus` is for tests.
 */
export function requestedWorkerCount(raw: unknown, cpus = availableParallelism()): number | undefined {
  if (typeof raw !== 'object' || raw === null) return undefined;
  const workers = (raw as { workers?: unknown }).workers;
  if (workers === undefined || workers === 'auto') return autoWorkerCount(cpus);
  return typeof workers === 'number' && Number.isInteger(workers) && workers >= 1 && workers <= 256 ? workers : undefined;
}

/** Runs in the primary: forks, relays, restarts. The workers wait for their config until `configure()`. */
export function forkWorkers(count: number): Primary {
  // 'advanced': structured clone, so the config arrives exactly as validated.
  cluster.setupPrimary({ serialization: 'advanced', execArgv: workerExecArgv() });
  let stopping = false;
  let restartDelayMs = 1000;
  let config: LoadedConfig | undefined;
  let logger: Logger | undefined;
  const waitingForConfig = new Set<Worker>();
  const ready = new Set<number>();
  /** The worker serving each index now (a replacement takes over its index once forked). */
  const current = new Map<number, Worker>();
  /** Workers a rolling restart is stopping: their exit is expected, not restarted. */
  const retired = new Set<Worker>();
  const allReady = Promise.withResolvers<void>();

  const given = new WeakMap<Worker, LoadedConfig>(); // changed while the worker started: sent again once it listens
  const sendConfig = (worker: Worker): void => {
    if (config) worker.send({ certgate: 'config', config } satisfies ConfigMessage);
    if (config) given.set(worker, config);
    else waitingForConfig.add(worker);
  };
  const onReady = (worker: Worker, index: number, msg: ReadyMessage): void => {
    if (config && given.get(worker) !== config) worker.send({ certgate: 'reload', config } satisfies ReloadMessage);
    ready.add(index);
    restartDelayMs = 1000;
    if (ready.size === count) {
      logger?.info({ step: 'listen', workers: count, https: msg.httpsPort, http: msg.httpPort }, 'certgate listening');
      allReady.resolve();
    }
  };
  const fork = (index: number): Worker => {
    const worker = cluster.fork({ CERTGATE_WORKER_INDEX: String(index) });
    current.set(index, worker);
    worker.on('message', (msg: unknown) => routeWorkerMessage(worker, msg, { sendConfig, collectMetrics, collecting, ready: (m) => onReady(worker, index, m) }));
    worker.on('exit', (code, signal) => {
      waitingForConfig.delete(worker);
      if (stopping || retired.delete(worker)) return;
      ready.delete(index);
      reportDeath(logger, { worker: index, pid: worker.process.pid, code, signal, restartInMs: restartDelayMs });
      // Unless a rolling restart's replacement took over the index meanwhile.
      setTimeout(() => current.get(index) === worker && !stopping && fork(index), restartDelayMs).unref();
      restartDelayMs = Math.min(restartDelayMs * 2, 30_000);
    });
    return worker;
  };

  /** Snapshot handlers of the collections under way, by request id. */
  const collecting = new Map<number, SnapshotHandler>();
  const collectMetrics = (asker: Worker, requestId: number): Promise<void> => collectPeerMetrics(asker, requestId, collecting, nextCollection++, logger);

  for (let i = 0; i < count; i++) fork(i);
  let rolling: Promise<number> | undefined;

  return {
    configure(validated) {
      config = validated;
      for (const worker of waitingForConfig) sendConfig(worker);
      waitingForConfig.clear();
    },
    async run(log) {
      logger = log;
      await allReady.promise;
    },
    reload(reloaded) {
      config = reloaded;
      // A worker still starting drops it; it gets it again once it listens (onReady).
      for (const worker of current.values()) if (worker.isConnected()) worker.send({ certgate: 'reload', config: reloaded } satisfies ReloadMessage);
    },
    replace(next) {
      if (rolling) return rolling;
      config = next;
      rolling = replaceOneByOne(count, { current, retired, fork, stopping: () => stopping, logger, killAfterMs: next.shutdownTimeout + STOP_MARGIN_MS });
      return rolling.finally(() => (rolling = undefined));
    },
    async stop() {
      stopping = true;
      await stopAllWorkers(config ? config.shutdownTimeout + STOP_MARGIN_MS : 8000);
    },
  };
}

/** A worker died unexpectedly: logged, or on stderr before the primary has its logger. */
function reportDeath(logger: Logger | undefined, fields: { worker: number; pid: number | undefined; code: number; signal: string; restartInMs: number }): void {
  if (logger) logger.error({ step: 'worker-exit', ...fields }, 'worker died; restarting');
  else process.stderr.write(`certgate: worker ${fields.worker} died (${fields.signal ?? `exit code ${fields.code}`}); restarting\n`);
}

/** What routeWorkerMessage hands each message to. */
interface MessageRoutes {
  sendConfig(worker: Worker): void;
  collectMetrics(asker: Worker, requestId: number): Promise<void>;
  collecting: Map<number, SnapshotHandler>;
  ready(msg: ReadyMessage): void;
}

/** In the primary: one message from `worker`, to where it goes. */
function routeWorkerMessage(worker: Worker, msg: unknown, to: MessageRoutes): void {
  if (!isWorkerMessage(msg)) return;
  if (msg.certgate === 'config-request') {
    to.sendConfig(worker);
  } else if (msg.certgate === 'bus') {
    for (const other of Object.values(cluster.workers ?? {})) if (other && other !== worker && other.isConnected()) other.send(msg);
  } else if (msg.certgate === 'metrics-request') {
    void to.collectMetrics(worker, msg.id);
  } else if (msg.certgate === 'metrics-report') {
    to.collecting.get(msg.id)?.(worker, msg.snapshot);
  } else if (msg.certgate === 'ready') {
    to.ready(msg);
  }
}

/** What replaceOneByOne works with: the primary's bookkeeping of forkWorkers. */
interface RollingRestart {
  current: Map<number, Worker>;
  retired: Set<Worker>;
  fork(index: number): Worker;
  stopping(): boolean;
  logger: Logger | undefined;
  /** SIGKILL an old worker that has not exited this long after its SIGTERM. */
  killAfterMs: number;
}

/**
 * Replaces the workers one at a time: the replacement first (it binds the ports beside the old
 * one with SO_REUSEPORT), then the old one drains. Returns how many were replaced.
 */
async function replaceOneByOne(count: number, roll: RollingRestart): Promise<number> {
  let replaced = 0;
  for (let index = 0; index < count && !roll.stopping(); index++) {
    const old = roll.current.get(index);
    const fresh = roll.fork(index);
    const listening = await workerListening(fresh);
    if (!listening) {
      roll.logger?.error({ step: 'rolling-restart', worker: index, pid: fresh.process.pid }, 'the replacement worker exited before it listened; the rolling restart stops (the old worker keeps serving)');
      if (old && !old.isDead()) roll.current.set(index, old);
      break;
    }
    if (old && !old.isDead()) {
      roll.retired.add(old);
      await stopWorker(old, roll.killAfterMs);
    }
    roll.logger?.info({ step: 'rolling-restart', worker: index, oldPid: old?.process.pid, pid: fresh.process.pid }, 'worker replaced');
    replaced++;
  }
  return replaced;
}

/** Resolves true once `worker` says it listens, false if it exits first. */
function workerListening(worker: Worker): Promise<boolean> {
  return new Promise((resolve) => {
    const onMessage = (msg: unknown): void => {
      if (isWorkerMessage(msg) && msg.certgate === 'ready') finish(true);
    };
    const onExit = (): void => finish(false);
    const finish = (listening: boolean): void => {
      worker.off('message', onMessage);
      worker.off('exit', onExit);
      resolve(listening);
    };
    worker.on('message', onMessage);
    worker.once('exit', onExit);
  });
}

/** SIGTERM (the worker drains), SIGKILL if it is still alive `killAfterMs` later; resolves when it exited. */
function stopWorker(worker: Worker, killAfterMs: number): Promise<void> {
  return new Promise<void>((resolve) => {
    if (worker.isDead()) return resolve();
    const kill = setTimeout(() => worker.process.kill('SIGKILL'), killAfterMs);
    worker.once('exit', () => {
      clearTimeout(kill);
      resolve();
    });
    worker.process.kill('SIGTERM');
  });
}

type SnapshotHandler = (from: Worker, snapshot: MetricsSnapshot | null) => void;

/** Ids of the primary's metrics collections. */
let nextCollection = 0;

/** Asks every other live worker for its snapshot and answers `asker` with what came in time. */
async function collectPeerMetrics(asker: Worker, requestId: number, collecting: Map<number, SnapshotHandler>, id: number, logger: Logger | undefined): Promise<void> {
  const others = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined && w !== asker && w.isConnected());
  const snapshots: MetricsSnapshot[] = [];
  await new Promise<void>((resolve) => {
    const waiting = new Set(others);
    const done = (): void => {
      clearTimeout(timer);
      collecting.delete(id);
      resolve();
    };
    const timer = setTimeout(done, METRICS_COLLECT_TIMEOUT_MS);
    collecting.set(id, (from, snapshot) => {
      if (!waiting.delete(from)) return;
      if (snapshot) snapshots.push(snapshot);
      if (waiting.size === 0) done();
    });
    for (const w of others) w.send({ certgate: 'metrics-collect', id } satisfies MetricsCollect);
    if (waiting.size === 0) done();
  });
  const missing = others.length - snapshots.length;
  if (missing > 0) logger?.warn({ step: 'metrics', missing, asked: others.length }, 'workers did not send their metrics in time; /metrics leaves them out');
  if (asker.isConnected()) asker.send({ certgate: 'metrics-reply', id: requestId, snapshots, missing } satisfies MetricsReply);
}

/** SIGTERM to every worker (they drain), SIGKILL to those still alive `killAfterMs` later; resolves when all exited. */
async function stopAllWorkers(killAfterMs: number): Promise<void> {
  const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined);
  await Promise.all(workers.map((w) => stopWorker(w, killAfterMs)));
}

/**
 * Whether this process runs the admin API: a single process always; with workers, worker 0 only
 * (one API per instance on one port; the primary does not load the gateway, and worker 0 is
 * restarted with the same index if it dies, so the API comes back with it).
 */
export function runsAdminApi(): boolean {
  return !cluster.isWorker || process.env.CERTGATE_WORKER_INDEX === '0';
}

/** In a worker: the validated config, from the primary. */
export function requestConfig(): Promise<LoadedConfig> {
  return new Promise((resolve) => {
    const onMessage = (msg: unknown) => {
      if (!isPrimaryMessage(msg, 'config')) return;
      process.off('message', onMessage);
      resolve(msg.config);
    };
    process.on('message', onMessage);
    process.send?.({ certgate: 'config-request' } satisfies ConfigRequest);
  });
}

/** In a worker: calls `apply` with each config the primary sends on a reload (SIGHUP). */
export function receiveReloads(apply: (config: LoadedConfig) => void): void {
  process.on('message', (msg: unknown) => {
    if (isPrimaryMessage(msg, 'reload')) apply(msg.config);
  });
}

/** Tells the primary this worker is listening. */
export function announceWorkerReady(httpsPort: number, httpPort: number): void {
  process.send?.({ certgate: 'ready', httpsPort, httpPort } satisfies ReadyMessage);
}

/** In a worker: answers the primary's requests for this worker's metrics with `snapshot()`. */
export function answerMetricsRequests(snapshot: () => Promise<MetricsSnapshot>): void {
  process.on('message', (msg: unknown) => {
    if (!isPrimaryMessage(msg, 'metrics-collect')) return;
    const report = (taken: MetricsSnapshot | null): void => void process.send?.({ certgate: 'metrics-report', id: msg.id, snapshot: taken } satisfies MetricsReport);
    snapshot().then(report, () => report(null));
  });
}

let nextMetricsRequest = 0;

/** In the worker serving GET /metrics: the other workers' snapshots, through the primary. */
export function requestPeerMetrics(): Promise<PeerSnapshots> {
  const id = nextMetricsRequest++;
  return new Promise((resolve) => {
    // The primary answers within its own timeout; this one only guards against a lost primary.
    const timer = setTimeout(() => finish({ snapshots: [], missing: 0 }), METRICS_COLLECT_TIMEOUT_MS * 2);
    const onMessage = (msg: unknown): void => {
      if (isPrimaryMessage(msg, 'metrics-reply') && msg.id === id) finish({ snapshots: msg.snapshots, missing: msg.missing });
    };
    const finish = (answer: PeerSnapshots): void => {
      clearTimeout(timer);
      process.off('message', onMessage);
      resolve(answer);
    };
    process.on('message', onMessage);
    process.send?.({ certgate: 'metrics-request', id } satisfies MetricsRequest);
  });
}

/** A bus between the workers of one primary (file storage: one machine, shared directory). */
export class IpcBus implements ClusterBus {
  private readonly local = new LocalBus();

  constructor() {
    process.on('message', (msg: unknown) => {
      if (isPrimaryMessage(msg, 'bus')) void this.local.publish(msg.channel, msg.message);
    });
  }

  async publish(channel: string, message: string): Promise<void> {
    process.send?.({ certgate: 'bus', channel, message } satisfies BusMessage);
    await this.local.publish(channel, message);
  }

  subscribe(channel: string, handler: (message: string) => void): Promise<() => Promise<void>> {
    return this.local.subscribe(channel, handler);
  }
}
