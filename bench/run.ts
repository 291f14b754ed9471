// `npm run bench`: certgate against Caddy (when Debian's caddy is installed), each with its own
// fresh Pebble, taking turns at the same loads. Prints a table and writes
// bench/results/<ISO timestamp>.json. See bench/README.md.
//
//   npm run bench                       full run (< 10 min)
//   npm run bench -- --quick            smaller counts and shorter loads (< 2 min)
//   npm run bench -- --smoke            every section at the smallest counts (what npm test runs)
//   npm run bench -- --out FILE         write the results JSON there instead of bench/results/
//   npm run bench -- --only first,proxy sections: first, burst, handshakes, memory, proxy, flood
//   npm run bench -- --no-caddy         certgate alone
//   npm run bench -- --profile          certgate under node --cpu-prof; top frames printed and saved
//   npm run bench -- --keep             keep the temp dir (configs, storage, gateway logs)
//   npm run bench -- --soak 10m         the soak instead of the sections (bench/soak.ts); with
//                                       --smoke at the smaller rates npm test runs
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startAcmeProxy } from '../test/support/acme-proxy.ts';
import { startPebble } from '../test/support/pebble.ts';
import { freePort } from '../test/support/ports.ts';
import { buildCertgate } from './build.ts';
import { FULL, QUICK, SMOKE, type Ctx, type Rig, type Row } from './context.ts';
import { caddyAvailable, type GatewayKind } from './gateways.ts';
import { formatTable } from './report.ts';
import { prepareTrees } from './seed.ts';
import { burst, firstRequest, handshakes, proxyThroughput } from './sections.ts';
import { flood } from './flood.ts';
import { parseDuration } from '../src/config/duration.ts';
import { formatSoak, runSoak, soakSettings, writeSoak } from './soak.ts';
import { PROJECT_ROOT, startAskServer, startUpstreamProcess } from './services.ts';
import { BENCH_TMP, haveCommand, log, machineInfo, now, run, tempDir } from './util.ts';

const SECTIONS = ['first', 'burst', 'handshakes', 'proxy', 'flood'] as const;
type Section = (typeof SECTIONS)[number];

function usage(msg?: string): never {
  if (msg) process.stderr.write(`bench: ${msg}\n`);
  process.stderr.write('usage: npm run bench -- [--quick | --smoke] [--only first,burst,handshakes,memory,proxy,flood] [--no-caddy] [--profile] [--keep] [--out FILE] [--soak DURATION]\n');
  process.exit(2);
}

interface Args {
  size: 'full' | 'quick' | 'smoke';
  only: Section[];
  noCaddy: boolean;
  profile: boolean;
  keep: boolean;
  out: string | undefined;
  /** --soak: the soak's length, ms. */
  soakMs: number | undefined;
}

function parseArgs(argv: string[]): Args {
  let size: Args['size'] = 'full';
  let out: string | undefined;
  let keep = false;
  let noCaddy = false;
  let profile = false;
  let only: Section[] = [...SECTIONS];
  let soakMs: number | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--quick' || a === '--smoke') {
      if (size !== 'full') usage('--quick and --smoke exclude each other');
      size = a === '--quick' ? 'quick' : 'smoke';
    } else if (a === '--out' || a.startsWith('--out=')) {
      out = a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[++i];
      if (!out) usage('--out needs a file');
    } else if (a === '--soak' || a.startsWith('--soak=')) {
      const v = a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[++i];
      soakMs = v === undefined ? undefined : parseDuration(v);
      if (soakMs === undefined || soakMs < 30_000) usage('--soak needs a duration of at least 30s, like 10m');
    } else if (a === '--no-caddy') noCaddy = true;
    else if (a === '--profile') profile = true;
    else if (a === '--keep') keep = true;
    else if (a === '--only' || a.startsWith('--only=')) {
      const v = a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[++i];
      if (!v) usage('--only needs a section list');
      const wanted = v.split(',').map((x) => (x.trim() === 'memory' ? 'handshakes' : x.trim()));
      for (const w of wanted) if (!(SECTIONS as readonly string[]).includes(w)) usage(`unknown section ${w}`);
      only = SECTIONS.filter((s) => wanted.includes(s));
    } else if (a === '--help' || a === '-h') usage();
    else usage(`unknown option ${a}`);
  }
  return { size, only, noCaddy, profile, keep, out, soakMs };
}

async function versions(): Promise<Record<string, string>> {
  const v = async (cmd: string, args: string[]): Promise<string> => {
    if (!haveCommand(cmd)) return 'not installed';
    const r = await run(cmd, args, { timeoutMs: 10_000 });
    return (r.stdout + r.stderr).split('\n').find((l) => l.trim())?.trim() ?? 'unknown';
  };
  const git = await run('git', ['-C', PROJECT_ROOT, 'rev-parse', '--short', 'HEAD'], { timeoutMs: 10_000 });
  const dirty = await run('git', ['-C', PROJECT_ROOT, 'status', '--porcelain', '--', 'src'], { timeoutMs: 10_000 });
  return {
    node: process.version,
    caddy: await v('caddy', ['version']),
    pebble: await v('dpkg-query', ['-W', '-f=${Version}', 'pebble']),
    wrk: await v('wrk', ['--version']),
    h2load: await v('h2load', ['--version']),
    openssl: await v('openssl', ['version']),
    certgateCommit: git.stdout.trim() + (dirty.stdout.trim() ? ' (src/ has uncommitted changes)' : ''),
  };
}

/** --soak: certgate alone, for the given time (bench/soak.ts); exit code 1 when it fails. */
async function soakMain(args: Args, soakMs: number): Promise<void> {
  const startedAt = new Date();
  const settings = soakSettings(soakMs, args.size === 'smoke');
  const info = { machine: machineInfo(), versions: await versions() };
  const certgate = await buildCertgate();
  const workRoot = await tempDir(BENCH_TMP, 'certgate-bench-soak-');
  log(`soak for ${soakMs / 1000} s${args.size === 'smoke' ? ' (--smoke rates)' : ''}: ${JSON.stringify(settings)}`);
  let result;
  try {
    result = await runSoak(settings, certgate, workRoot);
  } finally {
    if (args.keep) log(`kept config, storage and the gateway log in ${workRoot}`);
    else await rm(workRoot, { recursive: true, force: true }).catch(() => undefined);
  }
  const header = `certgate soak — ${startedAt.toISOString()} — ${soakMs / 1000} s — ${info.machine.cpuModel}, ${info.machine.cpus} CPUs; node ${info.versions.node}; certgate ${info.versions.certgateCommit} (${certgate.kind})`;
  process.stdout.write(`\n${header}\n\n${formatSoak(result)}\n`);
  const resultsDir = fileURLToPath(new URL('./results/', import.meta.url));
  await mkdir(resultsDir, { recursive: true });
  const file = args.out ?? join(resultsDir, `soak-${startedAt.toISOString().replace(/[:]/g, '-').replace(/\.\d+Z$/, 'Z')}.json`);
  await writeSoak(file, result, { startedAt: startedAt.toISOString(), argv: process.argv.slice(2), ...info, certgateBuild: certgate });
  process.stdout.write(`\nresults: ${file}\n`);
  if (!result.pass) process.exitCode = 1;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (args.soakMs !== undefined) return soakMain(args, args.soakMs);
  const settings = { full: FULL, quick: QUICK, smoke: SMOKE }[args.size];
  const started = now();
  const startedAt = new Date();
  const withCaddy = !args.noCaddy && caddyAvailable();
  const kinds: GatewayKind[] = withCaddy ? ['certgate', 'caddy'] : ['certgate'];
  const caddyNote = args.noCaddy ? 'Caddy skipped (--no-caddy)' : withCaddy ? undefined : 'Caddy is not installed (Debian package `caddy`): certgate alone, no ratios';
  if (caddyNote) log(caddyNote);
  for (const tool of ['wrk', 'h2load']) if (!haveCommand(tool)) log(`${tool} is not installed: the sections that need it will fail (npm run bench installs it as root)`);

  const resultsDir = fileURLToPath(new URL('./results/', import.meta.url));
  await mkdir(resultsDir, { recursive: true });
  const stamp = startedAt.toISOString().replace(/[:]/g, '-').replace(/\.\d+Z$/, 'Z');
  const workRoot = await tempDir(BENCH_TMP, 'certgate-bench-run-');
  const profileRoot = args.profile ? join(resultsDir, `profile-${stamp}`) : undefined;
  // Gateway logs of every section, kept for the five latest runs (outside the checkout).
  const logsParent = join(BENCH_TMP, 'certgate-bench-logs');
  const logsRoot = join(logsParent, stamp);
  await mkdir(logsRoot, { recursive: true });
  for (const old of (await readdir(logsParent)).sort().reverse().slice(5)) await rm(join(logsParent, old), { recursive: true, force: true });

  const info = { machine: machineInfo(), versions: await versions() };
  log(`${info.machine.cpuModel}, ${info.machine.cpus} CPUs; node ${info.versions.node}; caddy ${info.versions.caddy}`);

  const certgate = await buildCertgate();
  if (args.only.includes('handshakes')) await prepareTrees(kinds, settings.tiers); // once; cached across runs

  const ask = await startAskServer();
  const upstream = await startUpstreamProcess();
  const rigs = new Map<GatewayKind, Rig>();
  const ctx: Ctx = { settings, kinds, rigs, ask, upstream, workRoot, logsRoot, certgate, ...(profileRoot ? { profileRoot } : {}), raw: {}, rows: [], profiles: {} };
  const sectionTimes: Record<string, number> = {};
  let failure: unknown;
  try {
    // Each gateway gets its own fresh Pebble validating against that gateway's ports, and an
    // ACME logging proxy in front of it (the gateway's ACME directory).
    for (const kind of kinds) {
      const httpsPort = await freePort();
      let httpPort = await freePort();
      while (httpPort === httpsPort) httpPort = await freePort();
      const pebble = await startPebble({ httpPort, tlsPort: httpsPort });
      const acme = await startAcmeProxy(pebble);
      rigs.set(kind, { kind, httpsPort, httpPort, pebble, acme });
    }
    const run: Record<Section, (c: Ctx) => Promise<void>> = { first: firstRequest, burst, handshakes, proxy: proxyThroughput, flood };
    for (const section of args.only) {
      const t0 = now();
      log(`--- ${section}`);
      try {
        await run[section](ctx);
      } catch (err) {
        // Keep going: the other sections' figures are still worth having.
        failure ??= err;
        log(`section ${section} failed: ${(err as Error).stack ?? String(err)}`);
        ctx.rows.push({ section, metric: `${section}: FAILED (${(err as Error).message.split('\n')[0]})`, unit: '' });
      }
      sectionTimes[section] = Math.round(now() - t0);
    }
  } finally {
    for (const rig of rigs.values()) {
      await rig.acme.close().catch(() => undefined);
      await rig.pebble.stop().catch(() => undefined);
    }
    await upstream.close();
    await ask.close();
    if (args.keep) log(`kept configs, storage and gateway logs in ${workRoot}`);
    else await rm(workRoot, { recursive: true, force: true }).catch(() => undefined);
  }

  const durationS = Math.round((now() - started) / 100) / 10;
  const header = [
    `certgate bench${args.size === 'full' ? '' : ` (--${args.size})`} — ${startedAt.toISOString()} — ${durationS} s`,
    `${info.machine.cpuModel}, ${info.machine.cpus} CPUs, ${info.machine.memTotalMiB} MiB; node ${info.versions.node}; caddy ${info.versions.caddy}; certgate ${info.versions.certgateCommit} (${certgate.kind})`,
    ...(caddyNote ? [caddyNote] : []),
  ];
  const table = formatTable(ctx.rows, kinds);
  process.stdout.write(`\n${header.join('\n')}\n\n${table}\n`);
  const file = args.out ?? join(resultsDir, `${stamp}.json`);
  const result = {
    startedAt: startedAt.toISOString(),
    durationS,
    argv: process.argv.slice(2),
    settings,
    gateways: kinds,
    caddyNote: caddyNote ?? null,
    ...info,
    certgateBuild: certgate,
    logs: logsRoot,
    sectionTimesMs: sectionTimes,
    rows: ctx.rows.map((r: Row) => ({ ...r })),
    profiles: ctx.profiles,
    raw: ctx.raw,
  };
  await writeFile(file, JSON.stringify(result, null, 2) + '\n');
  process.stdout.write(`\nresults: ${file}\ngateway logs: ${logsRoot}${profileRoot ? `\nprofiles: ${profileRoot}` : ''}\n`);
  if (failure) process.exitCode = 1;
}

await main();
// Pebble's exit hooks and the gateways' parent-death signal clean up if anything is left.
process.exit();
