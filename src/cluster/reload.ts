// Config reloads in the process that owns the config file (a single process, or the primary):
//   1. a reload signal (SIGHUP; SIGUSR2 also reloads before a rolling restart) queues behind
//      any reload under way, so two quick signals apply in order
//   2. the file is read and validated again; a file that cannot be read, parsed or validated is
//      refused with one error line saying why, and the running config stays
//   3. the caller applies it (the gateway's reload(), or the primary's message to its workers)
//   4. one info line says what changed, one warn line names the keys that need a restart
// superviseReloads() is the cluster primary's side: SIGHUP sends the live keys to every worker,
// SIGUSR2 replaces the workers one at a time with the re-read config (src/cluster/workers.ts).
import { dirname } from 'node:path';
import { configChanges, withLiveChanges, type ConfigChanges } from '../config/changes.ts';
import type { LoadedConfig } from '../config/load.ts';
import { readConfigFile } from '../config/read.ts';
import type { Logger } from '../util/log.ts';
import type { Primary } from './workers.ts';

/** Applies a re-read, validated config (step 3) and returns what changed, for the log lines. */
export type ApplyReload = (config: LoadedConfig, signal: NodeJS.Signals) => Promise<ConfigChanges | undefined> | ConfigChanges | undefined;

/**
 * Steps 1-4 on each of `signals`: re-reads `file` and hands the valid config to `apply`. Without
 * a file (a config given in code) the signal is logged and ignored.
 */
export function reloadOnSignals(signals: NodeJS.Signals[], file: string | undefined, logger: Logger, apply: ApplyReload): void {
  for (const signal of signals) onSignalInTurn(signal, () => reloadFrom(file, signal, logger, apply));
}

/** Reload work of this process, one signal's at a time (step 1). */
let queue = Promise.resolve();

function onSignalInTurn(signal: NodeJS.Signals, work: () => Promise<void>): void {
  process.on(signal, () => {
    queue = queue.then(work);
  });
}

/**
 * The cluster primary's reloads (with `workers` > 1): SIGHUP re-reads the file and sends its
 * live keys to every worker; SIGUSR2 re-reads it (a refused file: the running config) and
 * replaces the workers one at a time with it (all keys but `workers` apply to the new ones).
 * Returns the config the primary runs now (for shutdownTimeout at a stop).
 */
export function superviseReloads(primary: Primary, config: LoadedConfig, logger: Logger): () => LoadedConfig {
  let running = config;
  reloadOnSignals(['SIGHUP'], config.file, logger, (next) => {
    const changes = configChanges(running, next);
    running = withLiveChanges(running, next);
    logger.level = process.env.CERTGATE_LOG_LEVEL || running.log.level;
    primary.reload(running);
    return changes;
  });
  onSignalInTurn('SIGUSR2', async () => {
    const next = config.file ? await rereadConfig(config.file, 'SIGUSR2', logger) : undefined;
    if (next) {
      // New workers start from it: every changed key applies, but their number.
      const { live, restart } = configChanges(running, next);
      const changed = [...live, ...restart].sort();
      running = { ...next, workers: running.workers };
      logReload(logger, { live: changed.filter((k) => k !== 'workers'), restart: changed.filter((k) => k === 'workers') }, 'SIGUSR2', next.file ?? config.file ?? '');
    }
    logger.info({ step: 'rolling-restart', signal: 'SIGUSR2' }, 'rolling restart: replacing the workers one at a time');
    const replaced = await primary.replace(running);
    logger.info({ step: 'rolling-restart', replaced }, `rolling restart done: ${replaced} workers replaced`);
  });
  return () => running;
}

/** Steps 2-4 once; never throws (a failure is logged). */
async function reloadFrom(file: string | undefined, signal: NodeJS.Signals, logger: Logger, apply: ApplyReload): Promise<void> {
  if (file === undefined) {
    logger.warn({ step: 'reload', signal }, 'config reload ignored: this process was not started from a config file');
    return;
  }
  const next = await rereadConfig(file, signal, logger);
  if (!next) return;
  try {
    const changes = await apply(next, signal);
    if (changes) logReload(logger, changes, signal, file);
  } catch (err) {
    logger.error({ step: 'reload', signal, file, err }, `config reload failed while applying it: ${(err as Error).message}; the running config stays for what was not applied`);
  }
}

/** Step 2: the file's config, validated; undefined (after one error line) when it cannot be used. */
export async function rereadConfig(file: string, signal: NodeJS.Signals, logger: Logger): Promise<LoadedConfig | undefined> {
  try {
    const { path, raw } = await readConfigFile(file);
    // Loaded here: a cluster worker imports this file but never validates (zod stays unloaded).
    const { parseConfig } = await import('../config/load.ts');
    return parseConfig(raw, { file: path, baseDir: dirname(path) });
  } catch (err) {
    const problems = (err as { problems?: string[] }).problems;
    logger.error({ step: 'reload', signal, file, ...(problems ? { problems } : {}) }, `config reload refused, the running config stays: ${(err as Error).message}`);
    return undefined;
  }
}

/** Step 4: what changed (info) and what needs a restart (warn). */
export function logReload(logger: Logger, changes: ConfigChanges, signal: NodeJS.Signals, file: string): void {
  const what = changes.live.length ? `applied ${changes.live.join(', ')}` : 'no live key changed';
  logger.info({ step: 'reload', signal, file, changed: changes.live, needsRestart: changes.restart }, `config reloaded: ${what}`);
  if (changes.restart.length) logger.warn({ step: 'reload', signal, keys: changes.restart }, `config keys changed that need a restart (not applied): ${changes.restart.join(', ')}`);
}
