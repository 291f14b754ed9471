// certgate command line: `certgate run` and `certgate validate`, config from --config or
// CERTGATE_CONFIG. A cluster worker runs this same script but only starts its gateway, with the
// config its primary sends (src/cluster/worker.ts): start-up time is mostly module loading, so
// everything else is imported only where it is needed.
import cluster from 'node:cluster';
import type { Option as CommandOption } from 'commander';
import type { LoadedConfig } from './config/load.ts';

if (cluster.isWorker) {
  const { runWorker } = await import('./cluster/worker.ts');
  await runWorker();
} else {
  await runCommandLine(process.argv);
}

async function runCommandLine(argv: string[]): Promise<void> {
  const [{ Command, Option }, { ConfigError, loadConfigFile }, { createLogger }] = await Promise.all([
    import('commander'),
    import('./config/load.ts'),
    import('./log.ts'),
  ]);

  const configOption = (): CommandOption => new Option('-c, --config <file>', 'config file (YAML or JSON)').env('CERTGATE_CONFIG');

  const loadOrExit = (file: string | undefined, command: string): LoadedConfig => {
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
  };

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
      const { runGateway, stopOnSignals } = await import('./cluster/run.ts');
      const { runPrimary, workerCount } = await import('./cluster/workers.ts');
      const workers = workerCount(config);
      if (workers > 1) {
        const primary = await runPrimary(workers, logger, config);
        stopOnSignals(logger, () => primary.stop());
        return;
      }
      await runGateway(config, logger, { inWorker: false });
    });

  program
    .command('validate')
    .description('check a config file and print the effective configuration; exits 2 when it is invalid')
    .addOption(configOption())
    .action((opts: { config?: string }) => {
      const config = loadOrExit(opts.config, 'validate');
      process.stdout.write(`${config.file}: valid\n`);
      process.stdout.write(JSON.stringify(config, null, 2) + '\n');
    });

  await program.parseAsync(argv);
}
