// Runs one gateway process (a single process, or one cluster worker) until SIGTERM/SIGINT:
//   1. start the gateway (a failed start exits 1)
//   2. reloads: a single process re-reads its file on SIGHUP (reload.ts); a worker applies the
//      config its primary sends and ignores the reload signals themselves (the primary has them)
//   3. SIGTERM/SIGINT: the gateway drains (requests in flight finish within shutdownTimeout), exit 0
import type { LoadedConfig } from '../config/load.ts';
import { logWritten, type Logger } from '../util/log.ts';
import type * as Server from '../gateway/index.ts';
import { reloadOnSignals } from './reload.ts';
import { announceWorkerReady, answerMetricsRequests, IpcBus, receiveReloads, requestPeerMetrics, runsAdminApi, STOP_MARGIN_MS } from './workers.ts';

/** The signals that reload the config file (SIGUSR2 also replaces a cluster's workers). */
export const RELOAD_SIGNALS: NodeJS.Signals[] = ['SIGHUP', 'SIGUSR2'];

/**
 * Starts the gateway (in a worker: on SO_REUSEPORT, with the IPC bus and cluster metrics) and
 * keeps it until SIGTERM/SIGINT. A failed start exits the process with status 1.
 */
export async function runGateway(
  config: LoadedConfig,
  logger: Logger,
  { inWorker, server }: { inWorker: boolean; server?: Promise<typeof Server> },
): Promise<void> {
  // Loaded here, not at the top: a primary that only forks workers never needs it.
  const { startGateway } = await (server ?? import('../gateway/index.ts'));
  let gateway: Awaited<ReturnType<typeof startGateway>>;
  try {
    gateway = await startGateway(config, {
      logger,
      ...(inWorker ? { reusePort: true } : {}),
      ...(runsAdminApi() ? {} : { admin: false }),
      // File storage has no pub/sub of its own: workers tell each other through the primary.
      ...(inWorker && config.storage.file ? { bus: new IpcBus() } : {}),
      // The worker serving GET /metrics adds up every worker's (through the primary).
      ...(inWorker ? { clusterMetrics: { peers: requestPeerMetrics, answer: answerMetricsRequests } } : {}),
    });
  } catch (err) {
    logger.fatal({ step: 'start', err }, 'certgate failed to start');
    process.stderr.write(`certgate run: ${(err as Error).message}\n`);
    logger.flush();
    process.exit(1);
  }
  const running = gateway;
  let shutdownTimeoutMs = config.shutdownTimeout;
  const reload = (next: LoadedConfig) => {
    const changes = running.reload(next);
    shutdownTimeoutMs = next.shutdownTimeout;
    return changes;
  };
  if (inWorker) {
    // A signal sent to the whole process group must not kill a worker (their default action).
    for (const signal of RELOAD_SIGNALS) process.on(signal, () => {});
    receiveReloads((next) => {
      try {
        const changes = reload(next);
        logger.debug({ step: 'reload', changed: changes.live }, 'worker applied the reloaded config');
      } catch (err) {
        logger.error({ step: 'reload', err }, `worker could not apply the reloaded config: ${(err as Error).message}`);
      }
    });
    announceWorkerReady(gateway.httpsPort, gateway.httpPort);
  } else {
    reloadOnSignals(RELOAD_SIGNALS, config.file, logger, (next, signal) => {
      if (signal === 'SIGUSR2') logger.warn({ step: 'reload', signal }, 'SIGUSR2 replaces workers; this is a single process (workers: 1): config reloaded, restart it to run new code');
      return reload(next);
    });
    logger.info({ step: 'listen', https: gateway.httpsPort, http: gateway.httpPort }, 'certgate listening');
  }
  stopOnSignals(logger, () => gateway.close(), () => shutdownTimeoutMs);
}

/**
 * Graceful stop on SIGTERM/SIGINT: `close()` (which drains), then exit 0. Forced (exit 0 too)
 * STOP_MARGIN_MS after `shutdownTimeoutMs()`, read when the signal comes (a reload may change it).
 */
export function stopOnSignals(logger: Logger, close: () => Promise<void>, shutdownTimeoutMs: () => number): void {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    const timeoutMs = shutdownTimeoutMs();
    logger.info({ step: 'stop', signal, shutdownTimeoutMs: timeoutMs }, 'certgate stopping: draining requests in flight');
    const force = setTimeout(() => {
      logger.warn({ step: 'stop', signal }, 'certgate did not close in time; exiting');
      logger.flush();
      process.exit(0);
    }, timeoutMs + STOP_MARGIN_MS);
    force.unref();
    close()
      // The access log's last lines (and any line) may still be in an asynchronous write.
      .finally(() => logWritten(logger))
      .finally(() => {
        logger.flush();
        process.exit(0);
      });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}
