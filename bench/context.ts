// What every section gets: settings, the per-gateway rigs (ports + own Pebble + ACME logging
// proxy), shared services, and helpers to start a set of gateways and take turns between them.
import { copyFile, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { PebbleHandle } from '../test/support/pebble.ts';
import type { AcmeFaultProxy } from '../test/support/acme-proxy.ts';
import type { CertgateBuild } from './build.ts';
import { startGateway, waitUntilServing, type GatewayKind, type GatewaySpec, type RunningGateway } from './gateways.ts';
import { formatProfile, summariseProfiles, type ProfileSummary } from './profile.ts';
import type { AskServer, Upstream } from './services.ts';
import { log, now, sleep } from './util.ts';

export interface Settings {
  quick: boolean;
  /** First requests measured per gateway, and the minimum time between two of them. */
  firstCount: number;
  firstWarmups: number;
  paceMs: number;
  burstNames: number;
  /**
   * Names issued at once before a burst, untimed: every worker (the kernel picks one per
   * connection) has loaded its ACME code before the burst's CPU is counted.
   */
  burstWarmups: number;
  burstConcurrency: number;
  /** After this, no new burst request is started. */
  burstBoundMs: number;
  /** Requests still in flight this long after the bound are abandoned (counted as unfinished). */
  burstTailMs: number;
  burstRequestTimeoutMs: number;
  /** Seeded-certificate tiers for the handshake and memory figures. */
  tiers: number[];
  hsConcurrency: number;
  /** Names per cold-pass slice; the gateways take turns slice by slice. */
  coldSlice: number;
  /** Time bound of one gateway's cold pass (sum over its slices). */
  coldBoundMs: number;
  /** Most names one cold pass touches (the largest tier is not walked to the end: see README). */
  coldMaxNames: number;
  warmSet: number;
  warmPrepasses: number;
  /** Measured warm-handshake rounds per gateway, and the length of one. */
  rounds: number;
  roundMs: number;
  /** Unmeasured handshakes per target before the warm rounds (see handshakeRounds). */
  hsWarmupMs: number;
  h2loadConnections: number;
  wrkSeconds: number;
  wrkRounds: number;
  /** Proxy: certgate with its default access log on takes its turns beside the others. */
  accessLogRow: boolean;
  settleMaxMs: number;
  /** Flood: random names per gateway and round, how many at a time, rounds. */
  floodNames: number;
  floodConcurrency: number;
  floodRounds: number;
  /** How long the real client handshakes during each flood. */
  floodRealMs: number;
  /** Flood: certgate with `tls.denied: fallback` takes its turns too (informational row). */
  floodFallbackRow: boolean;
}

export const FULL: Settings = {
  quick: false,
  firstCount: 30,
  firstWarmups: 2,
  paceMs: 1100,
  burstNames: 300,
  burstWarmups: 4,
  burstConcurrency: 30,
  burstBoundMs: 40_000,
  burstTailMs: 15_000,
  burstRequestTimeoutMs: 60_000,
  tiers: [1, 10_000, 100_000],
  hsConcurrency: 16,
  coldSlice: 5_000,
  coldBoundMs: 45_000,
  coldMaxNames: 20_000,
  warmSet: 1_000,
  warmPrepasses: 3,
  rounds: 6,
  roundMs: 3_000,
  hsWarmupMs: 10_000,
  h2loadConnections: 3_000,
  wrkSeconds: 5,
  wrkRounds: 4,
  accessLogRow: true,
  settleMaxMs: 45_000,
  floodNames: 5_000,
  floodConcurrency: 50,
  floodRounds: 2,
  floodRealMs: 4_000,
  floodFallbackRow: true,
};

export const QUICK: Settings = {
  quick: true,
  firstCount: 10,
  firstWarmups: 1,
  paceMs: 1100,
  burstNames: 60,
  burstWarmups: 4,
  burstConcurrency: 10,
  burstBoundMs: 10_000,
  burstTailMs: 5_000,
  burstRequestTimeoutMs: 30_000,
  tiers: [1, 10_000],
  hsConcurrency: 16,
  coldSlice: 5_000,
  coldBoundMs: 6_000,
  coldMaxNames: 10_000,
  warmSet: 500,
  warmPrepasses: 2,
  rounds: 3,
  roundMs: 2_000,
  hsWarmupMs: 3_000,
  h2loadConnections: 0,
  wrkSeconds: 3,
  wrkRounds: 1,
  accessLogRow: true,
  settleMaxMs: 15_000,
  floodNames: 5_000,
  floodConcurrency: 50,
  floodRounds: 1,
  floodRealMs: 3_000,
  floodFallbackRow: true,
};

/**
 * The smallest run that still goes through every section with both gateways: what
 * test/bench/bench.test.ts runs in `npm test` (it checks the figures are there and sound, never
 * how fast). Caddy 2.6's order limiter (10 per 10 s) allows first + burst names within it.
 */
export const SMOKE: Settings = {
  ...QUICK,
  firstCount: 2,
  firstWarmups: 1,
  burstNames: 6,
  burstWarmups: 2,
  burstConcurrency: 3,
  burstBoundMs: 10_000,
  burstTailMs: 10_000,
  tiers: [1, 100],
  coldSlice: 50,
  coldBoundMs: 5_000,
  coldMaxNames: 100,
  warmSet: 20,
  warmPrepasses: 1,
  roundMs: 1_000,
  hsWarmupMs: 500,
  wrkSeconds: 1,
  settleMaxMs: 10_000,
  floodNames: 300,
  floodRealMs: 1_000,
  floodFallbackRow: false,
};

export interface Rig {
  kind: GatewayKind;
  httpsPort: number;
  httpPort: number;
  pebble: PebbleHandle;
  acme: AcmeFaultProxy;
}

export type Better = 'lower' | 'higher';

export interface Row {
  section: string;
  metric: string;
  unit: string;
  certgate?: number;
  caddy?: number;
  /** certgate / caddy unless given. */
  ratio?: number;
  /**
   * 'paired-rounds': `ratio` is the median over rounds of certgate's figure ÷ Caddy's in the same
   * round, and each column a median too, so ratio ≠ certgate / caddy in general.
   */
  ratioOf?: 'paired-rounds';
  better?: Better;
  target?: string;
  pass?: boolean;
  note?: string;
}

export interface Ctx {
  settings: Settings;
  kinds: GatewayKind[];
  rigs: Map<GatewayKind, Rig>;
  ask: AskServer;
  upstream: Upstream;
  workRoot: string;
  certgate: CertgateBuild;
  /** Set with --profile: certgate runs with --cpu-prof, profiles go below this directory. */
  profileRoot?: string;
  /** Gateway logs (and, for anomalies, Pebble's output and the ACME exchanges) are copied here. */
  logsRoot: string;
  raw: Record<string, unknown>;
  rows: Row[];
  profiles: Record<string, ProfileSummary>;
}

export function row(ctx: Ctx, r: Row): void {
  if (r.ratio === undefined && r.certgate !== undefined && r.caddy !== undefined && r.caddy !== 0) r.ratio = r.certgate / r.caddy;
  ctx.rows.push(r);
}

/** Gateways of one section, started one after the other (so start-up times do not overlap). */
export interface GatewaySet {
  gateways: Map<GatewayKind, RunningGateway>;
  /** Spawn → ready (or → first handshake serving `readyName`), ms. */
  startMs: Map<GatewayKind, number>;
  storage: Map<GatewayKind, string>;
  /** Working directory per gateway (config, storage/). */
  dirs: Map<GatewayKind, string>;
  stop(): Promise<void>;
}

export interface SetOptions {
  label: string;
  spec?: (kind: GatewayKind) => Partial<GatewaySpec>;
  /** Fill storage before start (seeding). Runs for all gateways in parallel. */
  prepare?: (kind: GatewayKind, storageDir: string, acmeDirectory: string) => Promise<void>;
  /** Name whose certificate must be served for the gateway to count as started. */
  readyName?: string;
  entry?: string;
  kinds?: GatewayKind[];
  /** Start on the (already filled) storage of an earlier, stopped set instead of a fresh one. */
  reuseStorageOf?: GatewaySet;
}

export async function startSet(ctx: Ctx, opts: SetOptions): Promise<GatewaySet> {
  const kinds = opts.kinds ?? ctx.kinds;
  const dirs = new Map<GatewayKind, string>();
  for (const kind of kinds) {
    const reused = opts.reuseStorageOf?.dirs.get(kind);
    if (reused) {
      dirs.set(kind, reused);
      continue;
    }
    const dir = join(ctx.workRoot, `${opts.label}-${kind}`);
    await rm(dir, { recursive: true, force: true });
    await mkdir(join(dir, 'storage'), { recursive: true, mode: 0o700 });
    dirs.set(kind, dir);
  }
  if (opts.prepare) await Promise.all(kinds.map((kind) => opts.prepare!(kind, join(dirs.get(kind)!, 'storage'), ctx.rigs.get(kind)!.acme.directoryUrl)));
  const gateways = new Map<GatewayKind, RunningGateway>();
  const startMs = new Map<GatewayKind, number>();
  const profileDirs = new Map<GatewayKind, string>();
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await Promise.all([...gateways.values()].map((gw) => gw.stop()));
    for (const kind of gateways.keys()) {
      await copyFile(join(dirs.get(kind)!, `${kind}.log`), join(ctx.logsRoot, `${opts.label}-${kind}.log`)).catch(() => undefined);
    }
    for (const [kind, dir] of profileDirs) {
      const summary = summariseProfiles(dir);
      if (summary) {
        ctx.profiles[`${opts.label}/${kind}`] = summary;
        log(formatProfile(`cpu profile ${opts.label} (${kind})`, summary));
      }
    }
  };
  try {
    for (const kind of kinds) {
      const rig = ctx.rigs.get(kind)!;
      const dir = dirs.get(kind)!;
      let cpuProfDir: string | undefined;
      if (ctx.profileRoot && kind === 'certgate') {
        cpuProfDir = join(ctx.profileRoot, opts.label);
        await mkdir(cpuProfDir, { recursive: true });
        profileDirs.set(kind, cpuProfDir);
      }
      const spec: GatewaySpec = {
        kind,
        httpsPort: rig.httpsPort,
        httpPort: rig.httpPort,
        storageDir: join(dir, 'storage'),
        workDir: dir,
        acmeDirectory: rig.acme.directoryUrl,
        acmeRootPath: rig.pebble.listenerCaPath,
        allow: ['**.bench.test'], // any depth: names like f0-<tag>.first.bench.test
        ask: ctx.ask.url,
        upstreamPort: ctx.upstream.port,
        certgateEntry: opts.entry ?? ctx.certgate.entry,
        ...(cpuProfDir ? { cpuProfDir } : {}),
        ...opts.spec?.(kind),
      };
      const gw = await startGateway(spec);
      gateways.set(kind, gw);
      const ms = opts.readyName
        ? await waitUntilServing(gw, opts.readyName, { timeoutMs: 60_000, intervalMs: 5 })
        : await waitUntilServing(gw, 'localhost', { timeoutMs: 60_000, anyCertificate: true, intervalMs: 5 });
      startMs.set(kind, ms);
      log(`${opts.label}: ${kind} up in ${Math.round(ms)} ms (pid ${gw.pid})`);
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { gateways, startMs, storage: new Map([...dirs].map(([k, d]) => [k, join(d, 'storage')])), dirs, stop };
}

/** Saves Pebble's output and the ACME exchanges of one gateway's rig next to the logs (for anomalies). */
export async function saveAcmeEvidence(ctx: Ctx, kind: GatewayKind, label: string): Promise<string> {
  const rig = ctx.rigs.get(kind)!;
  const base = join(ctx.logsRoot, `${label}-${kind}`);
  await writeFile(`${base}-pebble.log`, rig.pebble.output());
  await writeFile(`${base}-acme-exchanges.jsonl`, rig.acme.exchanges().map((e) => JSON.stringify(e)).join('\n') + '\n');
  return base;
}

/** Waits until no gateway of the set uses more than ~5% of a core (background start-up work). */
export async function settle(set: GatewaySet, maxMs: number): Promise<number> {
  const t0 = now();
  const gws = [...set.gateways.values()];
  while (now() - t0 < maxMs) {
    const before = gws.map((g) => g.cpuMs());
    await sleep(1000);
    const busy = gws.some((g, i) => g.cpuMs() - before[i]! > 50);
    if (!busy) break;
  }
  return now() - t0;
}

/** Kinds in turn, the order flipped every round so neither always goes first. */
export function turn<T>(kinds: T[], round: number): T[] {
  return round % 2 === 0 ? [...kinds] : [...kinds].reverse();
}
