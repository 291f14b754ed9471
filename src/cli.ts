// certgate command line: `certgate run` and `certgate validate`, config from --config or
// CERTGATE_CONFIG.
import cluster from 'node:cluster';
import { Command, Option } from 'commander';
import { announceWorkerReady, IpcBus, runPrimary, runsAdminApi, workerCount } from './cluster/workers.ts';
import { ConfigError, loadConfigFile, type LoadedConfig } from './config/load.ts';
import { createLogger } from './log.ts';

function configOption(): Option {
  return new Option('-c, --config <file>', 'config file (YAML or JSON)').env('CERTGATE_CONFIG');
}

function loadOrExit(file: string | undefined, command: string): LoadedConfig {
  if (!file) {
    process.stderr.write(`certgate ${command}: no config file; pass --config FILE or set CERTGATE_CONFIG\n`);
    process.exit(2);
  }
  try {
    return loadConfigFile(file);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`certgate ${command}: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
}

const program = new Command()
  .name('certgate')
  .description('HTTPS gateway for unlimited custom domains, with certificates obtained on demand from any ACME CA')
  .showHelpAfterError();

program
  .command('run')
  .description('start the gateway: HTTPS listener with on-demand certificates, HTTP listener for http-01 and redirects')
  .addOption(configOption())
  .action(async (opts: { config?: string }) => {
    const config = loadOrExit(opts.config, 'run');
    const logger = createLogger({ level: config.log.level });
    const workers = workerCount(config);
    if (workers > 1 && cluster.isPrimary) {
      const primary = await runPrimary(workers, logger);
      onStop(logger, () => primary.stop());
      return;
    }
    const inWorker = cluster.isWorker;
    // Loaded here, not at the top: a primary that only forks workers never needs it.
    const { startGateway } = await import('./server.ts');
    let gateway: Awaited<ReturnType<typeof startGateway>>;
    try {
      gateway = await startGateway(config, {
        logger,
        ...(inWorker ? { reusePort: true } : {}),
        ...(runsAdminApi() ? {} : { admin: false }),
        // File storage has no pub/sub of its own: workers tell each other through the primary.
        ...(inWorker && config.storage.file ? { bus: new IpcBus() } : {}),
      });
    } catch (err) {
      logger.fatal({ step: 'start', err }, 'certgate failed to start');
      process.stderr.write(`certgate run: ${(err as Error).message}\n`);
      logger.flush();
      process.exit(1);
    }
    if (inWorker) announceWorkerReady(gateway.httpsPort, gateway.httpPort);
    else logger.info({ step: 'listen', https: gateway.httpsPort, http: gateway.httpPort }, 'certgate listening');
    onStop(logger, () => gateway.close());
  });

/** Graceful stop on SIGTERM/SIGINT, forced after 10 s. */
function onStop(logger: ReturnType<typeof createLogger>, close: () => Promise<void>): void {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ step: 'stop', signal }, 'certgate stopping');
    const force = setTimeout(() => process.exit(0), 10_000);
    force.unref();
    close().finally(() => {
      logger.flush();
      process.exit(0);
    });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

program
  .command('validate')
  .description('check a config file and print the effective configuration; exits 2 when it is invalid')
  .addOption(configOption())
  .action((opts: { config?: string }) => {
    const config = loadOrExit(opts.config, 'validate');
    process.stdout.write(`${config.file}: valid\n`);
    process.stdout.write(JSON.stringify(config, null, 2) + '\n');
  });

await program.parseAsync(process.argv);
