// `npm run bench -- --soak 10m`: one certgate (the bench's build, default `workers`) on Redis
// storage against a Pebble issuing short-lived certificates, under every kind of work at once
// for the given time, sampled every few seconds; fails when a series keeps growing or requests
// fail outside the Redis restart's window. See bench/README.md, "Soak".
//
//   1. Pebble (certificates living `validityS`), Redis, an `ask` server and the upstream start;
//      certgate starts with caches bounded small enough to fill in the run's first sixth, so
//      that later growth is not the caches filling (see soakSettings)
//   2. the `renew` names are issued first (they renew every half-life for the whole run)
//   3. the loads run: a new name every `newNameEveryMs` (issued on demand, approved by `ask` only
//      for a quarter of the lifetime, so each is issued once and not renewed), keep-alive proxy
//      requests for the renew names, random-SNI noise
//   4. meanwhile, every `sampleMs`: RSS and PSS of the process tree (/proc), the workers' V8
//      heap, active handles and event-loop delay p99 (the admin API's /metrics: prom-client's
//      default metrics), and issued/renewed counts from the gateway's log
//   5. at 35% of the run Redis is SIGKILLed (by PID) and started again on the same port and data
//      directory `redisDownMs` later; failures until `graceMs` after it answers are expected
//   6. verdict (soak-criteria.ts): each series judged over the second half; requests failed
//      outside the window, no new name issued in the last third, or no renewal after the
//      window (when the run leaves time for one) fail the soak
import { request as httpRequest } from 'node:http';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdir, open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startPebble, type PebbleHandle } from '../test/support/pebble.ts';
import { freePort } from '../test/support/ports.ts';
import { startRedis, type RedisHandle } from '../test/support/redis.ts';
import type { CertgateBuild } from './build.ts';
import { httpsGet } from './clients.ts';
import { startGateway, waitUntilServing, type RunningGateway } from './gateways.ts';
import { judgeSeries, type Point, type SeriesRule, type SeriesVerdict } from './soak-criteria.ts';
import { newNameLoad, noiseLoad, proxyLoad, type Failure, type LoadTally, type LoadTarget } from './soak-load.ts';
import { startUpstreamProcess } from './services.ts';
import { log, memoryOf, now, percentile, round, sleep } from './util.ts';

/** Rates and bounds of one soak; soakSettings() derives them from the length. */
export interface SoakSettings {
  durationMs: number;
  sampleMs: number;
  newNameEveryMs: number;
  renewNames: number;
  /** Lifetime of Pebble's certificates, s (certgate renews at half-life below 10 days). */
  validityS: number;
  proxyConnections: number;
  proxyRatePerS: number;
  noiseRatePerS: number;
  noiseConcurrency: number;
  /** Fraction of the run at which Redis is killed. */
  redisKillAt: number;
  redisDownMs: number;
  /** Failures up to this long after Redis answers again still count as the restart's. */
  graceMs: number;
  tlsCacheSize: number;
  tlsContextCacheSize: number;
  unknownNameCache: number;
  /** Smoothing window of the criterion, s: a tenth of the run, 10-60 s. */
  spanS: number;
}

/**
 * The soak's settings for a run of `durationMs`; `small` (`--smoke`, what npm test runs) lowers
 * the rates. Caches are bounded to what the loads fill within the first sixth of the run.
 */
export function soakSettings(durationMs: number, small: boolean): SoakSettings {
  const base = small
    ? { sampleMs: 2000, newNameEveryMs: 3000, renewNames: 3, validityS: 30, proxyConnections: 2, proxyRatePerS: 20, noiseRatePerS: 4, noiseConcurrency: 4, redisDownMs: 3000, graceMs: 10_000 }
    : { sampleMs: 5000, newNameEveryMs: 2000, renewNames: 8, validityS: 60, proxyConnections: 4, proxyRatePerS: 50, noiseRatePerS: 10, noiseConcurrency: 8, redisDownMs: 5000, graceMs: 15_000 };
  const sixthS = durationMs / 6000;
  const tlsCacheSize = base.renewNames + Math.max(4, Math.floor((sixthS * 1000) / base.newNameEveryMs));
  return {
    durationMs,
    ...base,
    redisKillAt: 0.35,
    tlsCacheSize,
    tlsContextCacheSize: Math.max(2, Math.floor(tlsCacheSize / 2)),
    unknownNameCache: Math.max(100, Math.round(base.noiseRatePerS * sixthS)),
    // The envelope must span half a GC sawtooth at least: the workers' RSS and heap went up and
    // down over ~110 s in the first 10-minute run, and a 30 s span read that as 5.8 MiB/min.
    spanS: Math.min(60, Math.max(10, durationMs / 10_000)),
  };
}

/** The series judged, with their bounds (growth over the judged half; see soak-criteria.ts). */
export const SOAK_RULES: Record<SeriesKey, SeriesRule> = {
  rssMiB: { name: 'RSS of the process tree (MiB)', smooth: 'band', absolute: 24, relative: 0.1 },
  pssMiB: { name: 'PSS of the process tree (MiB)', smooth: 'band', absolute: 24, relative: 0.1 },
  heapUsedMiB: { name: 'V8 heap used, workers (MiB)', smooth: 'band', absolute: 16, relative: 0.2 },
  handles: { name: 'active handles, workers', smooth: 'band', absolute: 16, relative: 0.25 },
  loopP99Ms: { name: 'event-loop delay p99 (ms)', smooth: 'level', absolute: 50, relative: 1 },
};

/** The sampled series. */
export type SeriesKey = 'rssMiB' | 'pssMiB' | 'heapUsedMiB' | 'handles' | 'loopP99Ms';

/** One sample: time since start, the series, and the log counts. */
export interface SoakSample extends Record<SeriesKey, number | null> {
  tS: number;
  issuedLines: number;
  renewedLines: number;
  errorLines: number;
}

/** Everything a soak found; written as the results JSON. */
export interface SoakResult {
  settings: SoakSettings;
  /** The Redis restart: killed, answering again, end of the grace (s since start). */
  redis: { killedS: number; backS: number; windowEndS: number } | null;
  judgeFromS: number;
  samples: SoakSample[];
  verdicts: SeriesVerdict[];
  loads: Record<'proxy' | 'newNames' | 'noise', { ok: number; failed: number; failedInWindow: number; failedOutside: number; skipped: number; failuresOutside: Failure[] }>;
  issued: number;
  renewed: number;
  renewedAfterWindow: number;
  newNamesOkLastThird: number;
  problems: string[];
  pass: boolean;
}

/** Step 3's `ask`: renew names always, a new name for a quarter of the lifetime after its first ask, nothing else. */
async function startSoakAsk(approveForMs: number): Promise<{ url: string; close(): Promise<void> }> {
  const firstAsked = new Map<string, number>();
  const server: Server = createServer((req, res) => {
    const domain = new URL(req.url ?? '/', 'http://x').searchParams.get('domain') ?? '';
    let ok = domain.endsWith('.renew.soak.test');
    if (domain.endsWith('.new.soak.test')) {
      const first = firstAsked.get(domain) ?? Date.now();
      firstAsked.set(domain, first);
      ok = Date.now() - first < approveForMs;
    }
    res.writeHead(ok ? 200 : 403, { 'content-type': 'text/plain' });
    res.end(ok ? 'ok\n' : 'no\n');
  });
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/ask`,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}

/** GET /metrics on the admin API (no token: loopback Host); the text, or null. */
function scrape(port: number): Promise<string | null> {
  return new Promise((resolve) => {
    const req = httpRequest({ host: '127.0.0.1', port, path: '/metrics', timeout: 8000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.once('end', () => resolve(res.statusCode === 200 ? body : null));
      res.once('error', () => resolve(null));
    });
    req.once('timeout', () => req.destroy(new Error('timeout')));
    req.once('error', () => resolve(null));
    req.end();
  });
}

/** One unlabelled sample's value from Prometheus text; null when absent. */
export function metricValue(text: string, name: string): number | null {
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? ([^ \\n]+)`, 'm').exec(text);
  return m ? Number(m[1]) : null;
}

/** The default metrics the soak reads (prom-client's, with certgate's `certgate_` prefix). */
export const SOAK_METRICS = {
  heapUsed: 'certgate_nodejs_heap_size_used_bytes',
  handles: 'certgate_nodejs_active_handles_total',
  loopP99: 'certgate_nodejs_eventloop_lag_p99_seconds',
  rss: 'certgate_process_resident_memory_bytes',
} as const;

/** Counts step lines in the gateway's log as it grows (read from where the last call stopped). */
function logCounter(file: string): () => Promise<{ issued: number; renewed: number; errors: number }> {
  let offset = 0;
  let rest = '';
  const counts = { issued: 0, renewed: 0, errors: 0 };
  return async () => {
    const fh = await open(file, 'r').catch(() => null);
    if (!fh) return { ...counts };
    try {
      for (;;) {
        const buf = Buffer.alloc(1 << 20);
        const { bytesRead } = await fh.read(buf, 0, buf.length, offset);
        if (bytesRead === 0) break;
        offset += bytesRead;
        const lines = (rest + buf.subarray(0, bytesRead).toString('utf8')).split('\n');
        rest = lines.pop() ?? '';
        for (const line of lines) {
          // The issuance manager logs `issued` for first issuances and renewals alike.
          if (line.includes('"step":"issued"')) counts.issued++;
          else if (line.includes('"step":"renewed"')) counts.renewed++;
          if (/"level":(50|60)/.test(line)) counts.errors++;
        }
      }
    } finally {
      await fh.close();
    }
    return { ...counts };
  };
}

interface Rig {
  pebble: PebbleHandle;
  redis: RedisHandle;
  ask: Awaited<ReturnType<typeof startSoakAsk>>;
  upstream: Awaited<ReturnType<typeof startUpstreamProcess>>;
  gateway: RunningGateway;
  adminPort: number;
  httpsPort: number;
}

/** Steps 1-2: everything started, the renew names issued. */
async function startRig(s: SoakSettings, certgate: CertgateBuild, workDir: string, renewNames: string[], started: Partial<Rig>): Promise<Rig> {
  const ports = new Set<number>();
  while (ports.size < 3) ports.add(await freePort());
  const [httpsPort, httpPort, adminPort] = [...ports] as [number, number, number];
  started.pebble = await startPebble({ httpPort, tlsPort: httpsPort, certificateValidityPeriod: s.validityS });
  started.redis = await startRedis();
  started.ask = await startSoakAsk((s.validityS * 1000) / 4);
  started.upstream = await startUpstreamProcess();
  await mkdir(join(workDir, 'storage'), { recursive: true });
  started.gateway = await startGateway({
    kind: 'certgate',
    httpsPort,
    httpPort,
    storageDir: join(workDir, 'storage'),
    workDir,
    acmeDirectory: started.pebble.directoryUrl,
    acmeRootPath: started.pebble.listenerCaPath,
    ask: started.ask.url,
    upstreamPort: started.upstream.port,
    certgateEntry: certgate.entry,
    accessLog: true, // the default: a soak runs what users run
    certgateExtra: {
      listen: { https: `127.0.0.1:${httpsPort}`, http: `127.0.0.1:${httpPort}`, admin: `127.0.0.1:${adminPort}` },
      storage: { redis: { url: started.redis.url, prefix: 'soak:' } },
      // One loopback client stands for many: its bucket must not turn away the soak's own rates.
      onDemand: { ask: started.ask.url, askCacheTtl: '1s', limits: { perClient: { rate: 100, burst: 1000 }, unknownNameCache: s.unknownNameCache } },
      tls: { cacheSize: s.tlsCacheSize, contextCacheSize: s.tlsContextCacheSize },
      renewal: { checkInterval: '1s', jitter: `${Math.max(1, Math.floor(s.validityS / 10))}s`, expiredGrace: '5s' },
    },
  });
  const rig = started as Rig;
  rig.adminPort = adminPort;
  rig.httpsPort = httpsPort;
  await waitUntilServing(rig.gateway, 'localhost', { timeoutMs: 60_000, anyCertificate: true });
  for (const name of renewNames) {
    const r = await httpsGet(httpsPort, name, 60_000);
    if (!r.ok) throw new Error(`soak set-up: ${name} was not issued (${r.error ?? `HTTP ${r.status}, right certificate: ${r.rightCertificate}`}):\n${rig.gateway.output().slice(-3000)}`);
  }
  return rig;
}

/** Step 4: one sample. */
async function sample(rig: Rig, t0: number, counts: () => Promise<{ issued: number; renewed: number; errors: number }>): Promise<SoakSample> {
  const tS = (now() - t0) / 1000;
  const mem = memoryOf(rig.gateway.pid);
  const text = await scrape(rig.adminPort);
  const read = (name: string, scale: number): number | null => {
    const v = text === null ? null : metricValue(text, name);
    return v === null ? null : round(v * scale, 2);
  };
  const c = await counts();
  return {
    tS: round(tS, 1),
    rssMiB: mem.rssMiB,
    pssMiB: mem.pssMiB,
    heapUsedMiB: read(SOAK_METRICS.heapUsed, 1 / 1048576),
    handles: read(SOAK_METRICS.handles, 1),
    loopP99Ms: read(SOAK_METRICS.loopP99, 1000),
    issuedLines: c.issued,
    renewedLines: c.renewed,
    errorLines: c.errors,
  };
}

/** Step 5: kill Redis by PID at `atMs`, start it again `downMs` later. */
async function redisRestart(rig: Rig, s: SoakSettings, t0: number, stopped: () => boolean): Promise<SoakResult['redis']> {
  const atMs = s.durationMs * s.redisKillAt;
  while (now() - t0 < atMs && !stopped()) await sleep(200);
  if (stopped()) return null;
  const pid = rig.redis.pid();
  await rig.redis.kill();
  const killedS = (now() - t0) / 1000;
  log(`soak: Redis (pid ${pid}) killed at ${killedS.toFixed(1)} s`);
  await sleep(s.redisDownMs);
  await rig.redis.restart();
  const backS = (now() - t0) / 1000;
  log(`soak: Redis answering again at ${backS.toFixed(1)} s (pid ${rig.redis.pid()})`);
  return { killedS: round(killedS, 1), backS: round(backS, 1), windowEndS: round(backS + s.graceMs / 1000, 1) };
}

/** Step 6. */
export function verdict(s: SoakSettings, samples: SoakSample[], redis: SoakResult['redis'], tallies: Record<'proxy' | 'newNames' | 'noise', LoadTally>): Omit<SoakResult, 'settings' | 'samples' | 'redis'> {
  const durationS = s.durationMs / 1000;
  const windowEndS = redis?.windowEndS ?? 0;
  const judgeFromS = Math.max(durationS / 2, windowEndS);
  const verdicts = (Object.keys(SOAK_RULES) as SeriesKey[]).map((key) =>
    judgeSeries(SOAK_RULES[key], samples.map((p): Point => ({ tS: p.tS, value: p[key] })), { judgeFromS, durationS, spanS: s.spanS, lookbackFromS: Math.max(windowEndS, judgeFromS - s.spanS) }),
  );
  const problems = verdicts.filter((v) => !v.pass).map((v) => `series ${v.name}: ${v.reason}`);
  const inWindow = (f: Failure): boolean => redis !== null && f.endS >= redis.killedS && f.startS <= redis.windowEndS;
  const loads = Object.fromEntries(
    Object.entries(tallies).map(([k, t]) => {
      const outside = t.failures.filter((f) => !inWindow(f));
      if (outside.length) problems.push(`load ${k}: ${outside.length} failed outside the Redis restart window, first at ${outside[0]!.startS.toFixed(1)} s: ${outside[0]!.error}`);
      return [k, { ok: t.ok, failed: t.failures.length, failedInWindow: t.failures.length - outside.length, failedOutside: outside.length, skipped: t.skipped, failuresOutside: outside.slice(0, 20) }];
    }),
  ) as SoakResult['loads'];
  const last = samples[samples.length - 1];
  const atWindowEnd = samples.find((p) => p.tS >= windowEndS);
  const renewed = last?.renewedLines ?? 0;
  const renewedAfterWindow = renewed - (atWindowEnd?.renewedLines ?? renewed);
  const newNamesOkLastThird = tallies.newNames.okStartsS.filter((t) => t >= (2 * durationS) / 3).length;
  if (newNamesOkLastThird === 0) problems.push('issuance stopped: no new name was issued in the last third of the run');
  if (durationS - windowEndS > s.validityS && renewedAfterWindow === 0) problems.push(`renewal stopped: nothing renewed in the ${Math.round(durationS - windowEndS)} s after the Redis restart (certificates live ${s.validityS} s)`);
  if (!redis) problems.push('Redis was not restarted');
  return { judgeFromS: round(judgeFromS, 1), verdicts, loads, issued: (last?.issuedLines ?? 0) - renewed, renewed, renewedAfterWindow, newNamesOkLastThird, problems, pass: problems.length === 0 };
}

/** Steps 1-6; stops everything it started, also on failure. */
export async function runSoak(s: SoakSettings, certgate: CertgateBuild, workDir: string): Promise<SoakResult> {
  const tag = Date.now().toString(36).slice(-4);
  const renewNames = Array.from({ length: s.renewNames }, (_, i) => `r${i}-${tag}.renew.soak.test`);
  const started: Partial<Rig> = {};
  try {
    const rig = await startRig(s, certgate, workDir, renewNames, started);
    const counts = logCounter(join(workDir, 'certgate.log'));
    const t0 = now();
    let stop = false;
    const target: LoadTarget = { port: rig.httpsPort, t0, stopped: () => stop || !rig.gateway.alive() };
    const samples: SoakSample[] = [];
    const sampler = (async () => {
      while (!target.stopped()) {
        samples.push(await sample(rig, t0, counts));
        await sleep(Math.max(0, s.sampleMs - (((now() - t0) % s.sampleMs))));
      }
    })();
    const loads = Promise.all([
      proxyLoad(target, renewNames, s.proxyConnections, s.proxyRatePerS),
      newNameLoad(target, (i) => `n${i}-${tag}.new.soak.test`, s.newNameEveryMs),
      noiseLoad(target, 'noise.soak.test', s.noiseRatePerS, s.noiseConcurrency),
    ]);
    const restart = redisRestart(rig, s, t0, target.stopped);
    while (now() - t0 < s.durationMs && rig.gateway.alive()) await sleep(250);
    stop = true;
    const [proxy, newNames, noise] = await loads;
    const redis = await restart;
    await sampler;
    samples.push(await sample(rig, t0, counts));
    const result = { settings: s, redis, samples, ...verdict(s, samples, redis, { proxy, newNames, noise }) };
    if (!rig.gateway.alive()) result.problems.unshift(`certgate exited during the soak:\n${rig.gateway.output().slice(-3000)}`);
    result.pass = result.problems.length === 0;
    return result;
  } finally {
    await started.gateway?.stop().catch(() => undefined);
    await started.upstream?.close().catch(() => undefined);
    await started.ask?.close().catch(() => undefined);
    await started.redis?.dispose().catch(() => undefined);
    await started.pebble?.stop().catch(() => undefined);
  }
}

/** The printed table: each series' start/end/max, the loads, the verdicts. */
export function formatSoak(r: SoakResult): string {
  const lines: string[] = [];
  const pad = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(36) : c.padStart(10))).join(' | ');
  lines.push(pad(['series', 'start', 'end', 'max', 'p99']));
  for (const key of Object.keys(SOAK_RULES) as SeriesKey[]) {
    const vals = r.samples.map((p) => p[key]).filter((v): v is number => v !== null);
    const f = (v: number | undefined): string => (v === undefined || !Number.isFinite(v) ? '—' : String(round(v, 1)));
    lines.push(pad([SOAK_RULES[key].name, f(vals[0]), f(vals[vals.length - 1]), f(Math.max(...vals)), f(percentile(vals, 99))]));
  }
  lines.push('', pad(['load', 'ok', 'failed', 'in window', 'outside']));
  for (const [k, l] of Object.entries(r.loads)) lines.push(pad([k, String(l.ok), String(l.failed), String(l.failedInWindow), String(l.failedOutside)]));
  lines.push('', `new names issued ${r.issued}, renewals ${r.renewed} (${r.renewedAfterWindow} after the Redis window), samples ${r.samples.length}, error log lines ${r.samples[r.samples.length - 1]?.errorLines ?? 0}`);
  if (r.redis) lines.push(`Redis killed at ${r.redis.killedS} s, answering at ${r.redis.backS} s, window until ${r.redis.windowEndS} s; judged from ${r.judgeFromS} s`);
  lines.push('', 'criterion: Theil–Sen slope of the band (the smaller slope of its lower and upper envelope; delay: rolling median) over the judged part; growth = slope × its length ≤ max(absolute, relative × level)');
  for (const v of r.verdicts) {
    lines.push(`${v.pass ? 'PASS' : 'FAIL'} ${v.name}: ${round(v.slopePerMin, 3)}/min (first third ${round(v.earlySlopePerMin, 3)}/min), growth ${round(v.growth, 2)} ≤ ${round(v.bound, 2)} (level ${round(v.level, 1)}, ${v.points} readings)${v.reason ? ` — ${v.reason}` : ''}`);
  }
  for (const p of r.problems) lines.push(`FAIL ${p}`);
  lines.push(r.pass ? 'soak: PASS' : 'soak: FAIL');
  return lines.join('\n');
}

/** Writes the results JSON. */
export async function writeSoak(file: string, result: SoakResult, extra: Record<string, unknown>): Promise<void> {
  await writeFile(file, JSON.stringify({ ...extra, soak: result }, null, 2) + '\n');
}
