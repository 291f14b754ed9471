// Runs one gateway process (a single process, or one cluster worker) until SIGTERM/SIGINT.
import type { LoadedConfig } from '../config/load.ts';
import { logWritten, type Logger } from '../util/log.ts';
import type * as Server from '../gateway/index.ts';
import { announceWorkerReady, answerMetricsRequests, IpcBus, requestPeerMetrics, runsAdminApi } from './workers.ts';

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
  if (inWorker) announceWorkerReady(gateway.httpsPort, gateway.httpPort);
  else logger.info({ step: 'listen', https: gateway.httpsPort, http: gateway.httpPort }, 'certgate listening');
  stopOnSignals(logger, () => gateway.close());
}

/** Graceful stop on SIGTERM/SIGINT, forced after 10 s. */
export function stopOnSignals(logger: Logger, close: () => Promise<void>): void {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ step: 'stop', signal }, 'certgate stopping');
    const force = setTimeout(() => process.exit(0), 10_000);
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
