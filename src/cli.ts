// certgate command line: `certgate run`, `certgate validate`, `certgate import caddy|auto-ssl`
// and `certgate export`, config from --config or CERTGATE_CONFIG; `certgate domains ...` and
// `certgate certs ...` call the admin API (src/cli/commands.ts). A cluster worker runs this same
// script but only starts its gateway, with the
// config its primary sends (src/cluster/worker.ts): start-up time is mostly module loading, so
// everything else is imported only where it is needed.
import cluster from 'node:cluster';
import { dirname } from 'node:path';
import type { Option as CommandOption } from 'commander';
import type { LoadedConfig } from './config/load.ts';
import { ConfigError, readConfigFile, type ConfigFile } from './config/read.ts';
import { restartWithYoungGenerationCap } from './cluster/young-generation.ts';

if (cluster.isWorker) {
  const { runWorker } = await import('./cluster/worker.ts');
  await runWorker();
} else {
  const plainRun = plainRunArguments(process.argv.slice(2));
  if (plainRun) await run(plainRun.config);
  else await runCommandLine(process.argv);
}

/**
 * `run --config FILE` (`-c FILE`, `--config=FILE`, or plain `run` with CERTGATE_CONFIG), the
 * command a service manager repeats at every start, read without loading commander: the
 * primary forks its workers ~40 ms sooner. Anything else (help, typos, other commands) goes
 * through commander, which stays the reference for the command line.
 */
function plainRunArguments(args: string[]): { config: string | undefined } | undefined {
  const [command, option, value, ...rest] = args;
  if (command !== 'run' || rest.length > 0) return undefined;
  if (option === undefined) return { config: process.env.CERTGATE_CONFIG || undefined };
  if (value === undefined && option.startsWith('--config=') && option.length > '--config='.length) return { config: option.slice('--config='.length) };
  if ((option === '--config' || option === '-c') && value !== undefined && !value.startsWith('-')) return { config: value };
  return undefined;
}

function exitWith(command: string, err: unknown): never {
  if (err instanceof ConfigError) {
    process.stderr.write(`certgate ${command}: ${err.message}\n`);
    process.exit(2);
  }
  throw err;
}

async function readOrExit(file: string | undefined, command: string): Promise<ConfigFile> {
  if (!file) {
    process.stderr.write(`certgate ${command}: no config file; pass --config FILE or set CERTGATE_CONFIG\n`);
    process.exit(2);
  }
  return readConfigFile(file).catch((err: unknown) => exitWith(command, err));
}

async function validateOrExit({ path, raw }: ConfigFile, command: string, beforeExit?: () => Promise<void>): Promise<LoadedConfig> {
  const { parseConfig } = await import('./config/load.ts');
  try {
    return parseConfig(raw, { file: path, baseDir: dirname(path) });
  } catch (err) {
    await beforeExit?.();
    return exitWith(command, err);
  }
}

/** `certgate run`: one gateway process, or a primary and its workers. */
async function run(configFile: string | undefined): Promise<void> {
  const file = await readOrExit(configFile, 'run');
  const { forkWorkers, requestedWorkerCount } = await import('./cluster/workers.ts');
  // Workers are forked before the config is validated: they load the gateway's modules while
  // this process loads the schema and validates. A config that fails validation stops them.
  const workers = requestedWorkerCount(file.raw);
  // One process: it needs the workers' young-generation cap for itself (a primary hands it to
  // its workers). Restarting costs one more Node start, so only here, after the cheap read.
  if (workers === 1) restartWithYoungGenerationCap();
  const primary = workers !== undefined && workers > 1 ? forkWorkers(workers) : undefined;
  const config = await validateOrExit(file, 'run', () => primary?.stop() ?? Promise.resolve());
  // A valid config has a valid `workers`, so `primary` exists exactly when it asks for more than one.
  // The workers get their config before this process loads its logger: they are the ones that serve.
  primary?.configure(config);
  const [{ createLogger }, { runGateway, stopOnSignals }, { superviseReloads }, { wildcardWarnings }] = await Promise.all([
    import('./util/log.ts'),
    import('./cluster/run.ts'),
    import('./cluster/reload.ts'),
    import('./config/describe.ts'),
  ]);
  const logger = createLogger({ level: config.log.level });
  // Here, not in the gateway: one line per pattern for the whole process tree, not per worker.
  for (const w of wildcardWarnings(config)) logger.warn({ step: 'config', pattern: w.pattern, keys: w.keys }, w.message);
  if (primary) {
    const running = superviseReloads(primary, config, logger);
    stopOnSignals(logger, () => primary.stop(), () => running().shutdownTimeout);
    await primary.run(logger);
    return;
  }
  await runGateway(config, logger, { inWorker: false });
}

async function runCommandLine(argv: string[]): Promise<void> {
  const commander = await import('commander');
  const { Command, Option } = commander;

  const configOption = (): CommandOption => new Option('-c, --config <file>', 'config file (YAML or JSON)').env('CERTGATE_CONFIG');

  const program = new Command()
    .name('certgate')
    .description('HTTPS gateway for unlimited custom domains, with certificates obtained on demand from any ACME CA')
    .showHelpAfterError();

  program
    .command('run')
    .description('start the gateway: HTTPS listener with on-demand certificates, HTTP listener for http-01 and redirects')
    .addOption(configOption())
    .action((opts: { config?: string }) => run(opts.config));

  program
    .command('validate')
    .description('check a config file and print what each host pattern matches and the effective configuration (secrets redacted); exits 2 when it is invalid')
    .addOption(configOption())
    .option('--check-dns', 'also check acme.dns: ask the DNS provider whether it accepts the credentials (changes nothing); exits 1 when it does not')
    .action(async (opts: { config?: string; checkDns?: boolean }) => {
      const config = await validateOrExit(await readOrExit(opts.config, 'validate'), 'validate');
      const { formatValidation } = await import('./config/describe.ts');
      // What each host pattern matches, then the effective config with its secrets redacted.
      process.stdout.write(formatValidation(config));
      if (opts.checkDns) process.exitCode = await checkDns(config);
    });

  const { addAdminCommands } = await import('./cli/commands.ts');
  addAdminCommands(program, commander);

  addMigrationCommands(program, configOption, Option);

  await program.parseAsync(argv);
}

/**
 * `certgate import caddy|auto-ssl` and `certgate export` (src/migrate/command.ts): they read the
 * config like `run` and open its storage, whether or not a gateway runs on it.
 */
function addMigrationCommands(program: import('commander').Command, configOption: () => CommandOption, Option: typeof CommandOption): void {
  type Flags = { config?: string; dryRun?: boolean; bind?: boolean; json?: boolean; concurrency?: string };
  const importFlags = (cmd: import('commander').Command) =>
    cmd
      .addOption(configOption())
      .option('--dry-run', 'read and check everything, report what would be imported, write nothing')
      .option('--bind', 'also create a registry binding (active, no upstream) for each imported name that has none')
      .option('--json', 'print the summary as JSON')
      .addOption(new Option('--concurrency <n>', 'entries handled at once').default('16'));
  const start = async (command: string, opts: Flags, source: import('./migrate/command.ts').ImportSource) => {
    const config = await validateOrExit(await readOrExit(opts.config, command), command);
    const concurrency = Number(opts.concurrency);
    const { runImport } = await import('./migrate/command.ts');
    process.exitCode = await runImport(config, source, { dryRun: opts.dryRun, bind: opts.bind, json: opts.json, ...(Number.isInteger(concurrency) && concurrency > 0 ? { concurrency } : {}) });
  };
  const imports = program.command('import').description('move certificates in from another server, keeping them and their renewal dates (no new orders)');
  importFlags(imports.command('caddy').description("Caddy's (CertMagic) file storage: certificates and ACME accounts"))
    .requiredOption('--from <dir>', "Caddy's data directory (the one holding certificates/ and acme/)")
    .action((opts: Flags & { from: string }) => start('import caddy', opts, { kind: 'caddy', from: opts.from }));
  importFlags(imports.command('auto-ssl').description("lua-resty-auto-ssl's Redis storage (<domain>:latest keys)"))
    .requiredOption('--redis <url>', 'the Redis lua-resty-auto-ssl stores in, e.g. redis://127.0.0.1:6379/0')
    .option('--prefix <p>', "lua-resty-auto-ssl's `prefix` option (keys P:<domain>:latest)")
    .option('--issuer <directory>', 'the acme.issuers directory the certificates came from (default: the first)')
    .action((opts: Flags & { redis: string; prefix?: string; issuer?: string }) => start('import auto-ssl', opts, { kind: 'auto-ssl', redis: opts.redis, prefix: opts.prefix, issuer: opts.issuer }));
  program
    .command('export')
    .description('write every certificate certgate holds as PEM files: DIR/<name>/{fullchain,cert,chain,privkey}.pem')
    .addOption(configOption())
    .requiredOption('--to <dir>', 'where to write (created if missing)')
    .option('--json', 'print the summary as JSON')
    .action(async (opts: { config?: string; to: string; json?: boolean }) => {
      const config = await validateOrExit(await readOrExit(opts.config, 'export'), 'export');
      const { runExport } = await import('./migrate/command.ts');
      process.exitCode = await runExport(config, opts.to, opts.json === true);
    });
}

/**
 * `certgate validate --check-dns`: builds the provider acme.dns names and calls its check()
 * (credentials and reachability, nothing written). Prints OK or the error (provider, step and
 * what the DNS host answered); returns the exit code: 0 OK, 1 failed or nothing to check.
 */
async function checkDns(config: LoadedConfig): Promise<number> {
  const dns = config.acme.dns;
  if (dns === undefined) {
    process.stderr.write('certgate validate --check-dns: acme.dns is not configured: no DNS provider to check\n');
    return 1;
  }
  const { createDnsProvider } = await import('./acme/dns/providers.ts');
  try {
    const provider = createDnsProvider(dns);
    if (!provider.check) {
      process.stdout.write(`acme.dns: provider ${provider.name} has no credentials check; nothing checked\n`);
      return 0;
    }
    await provider.check();
    process.stdout.write(`acme.dns: provider ${provider.name} OK (credentials accepted)\n`);
    return 0;
  } catch (err) {
    const step = (err as { step?: string }).step ?? 'check';
    process.stderr.write(`certgate validate --check-dns: acme.dns provider ${dns.provider} failed (step ${step}): ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}
