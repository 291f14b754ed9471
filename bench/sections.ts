// The measurements. Each section starts its gateways (fresh storage), lets them take turns at
// the same load, stops them, and records raw data plus table rows.
import { availableParallelism } from 'node:os';
import { domainTimings } from './acme-timings.ts';
import { TSX_ENTRY } from './build.ts';
import { httpsGet, type RequestResult } from './clients.ts';
import { row, saveAcmeEvidence, settle, startSet, turn, type Ctx, type GatewaySet } from './context.ts';
import { type GatewayKind } from './gateways.ts';
import { h2loadRun, handshakeLoad, wrk, type H2loadRun, type HandshakeRun, type WrkRun } from './loadgen.ts';
import { startExtraCertgate, startExtraGateway, type ExtraGateway } from './extra-gateway.ts';
import { localhostCertificate, seedCaddyLocalhost, seedStorage, type Seeded } from './seed.ts';
import { startNodeReference, startOpensslReference, type TlsReference } from './tls-reference.ts';
import { haveCommand, log, median, now, percentile, round, run, seededName, sleep } from './util.ts';

const RUN_TAG = Date.now().toString(36).slice(-4);

// -------------------------------------------------------------------------------------------------
// 1. First request to a new domain

export async function firstRequest(ctx: Ctx): Promise<void> {
  const s = ctx.settings;
  // `ask` only (no allow list) for certgate too, so both make the same policy call per new name.
  const set = await startSet(ctx, { label: 'first', spec: () => ({ askOnly: true }) });
  const raw: Record<string, unknown> = {};
  try {
    const warmups = new Map<GatewayKind, RequestResult[]>();
    for (const kind of ctx.kinds) {
      // Untimed: creates the ACME account and warms both processes up.
      const list: RequestResult[] = [];
      for (let w = 0; w < s.firstWarmups; w++) list.push(await httpsGet(ctx.rigs.get(kind)!.httpsPort, `w${w}-${RUN_TAG}.first.bench.test`, 60_000));
      warmups.set(kind, list);
    }
    const results = new Map<GatewayKind, RequestResult[]>(ctx.kinds.map((k) => [k, []]));
    const lastStart = new Map<GatewayKind, number>();
    // CPU per issued certificate at a pace both gateways keep, one new name at a time on a mostly
    // idle machine (the burst measures certgate at ~20 names/s on a saturated one, Caddy at ~1/s):
    // each request's window runs from its start to FIRST_CPU_TAIL_MS after its response (the
    // storing and logging that follow it), minus each process's idle CPU rate over as long.
    const idleRate = await idleCpuRates(set, ctx.kinds, 3000);
    const cpuWindows = new Map<GatewayKind, { cpuMs: number; ms: number }[]>(ctx.kinds.map((k) => [k, []]));
    const pendingWindows: Promise<void>[] = [];
    for (let i = 0; i < s.firstCount; i++) {
      for (const kind of turn(ctx.kinds, i)) {
        // Caddy 2.6 (certmagic 0.17) lets at most 10 orders start per 10 s per CA and account;
        // pacing every gateway at >= 1.1 s per new name keeps that limiter out of the figure.
        const wait = (lastStart.get(kind) ?? -Infinity) + s.paceMs - now();
        if (wait > 0) await sleep(wait);
        lastStart.set(kind, now());
        const gw = set.gateways.get(kind)!;
        const [c0, t0] = [gw.cpuPreciseMs(), now()];
        results.get(kind)!.push(await httpsGet(ctx.rigs.get(kind)!.httpsPort, `f${i}-${RUN_TAG}.first.bench.test`, 60_000));
        pendingWindows.push(sleep(FIRST_CPU_TAIL_MS).then(() => void cpuWindows.get(kind)!.push({ cpuMs: gw.cpuPreciseMs() - c0, ms: now() - t0 })));
      }
    }
    await Promise.all(pendingWindows);
    const summary: Record<string, Record<string, number>> = {};
    for (const kind of ctx.kinds) {
      const list = results.get(kind)!;
      // Each window's CPU less the process's idle CPU over as long.
      const perCertificate = cpuWindows.get(kind)!.map((w) => w.cpuMs - (idleRate.get(kind)! * w.ms) / 1000);
      const timings = domainTimings(ctx.rigs.get(kind)!.acme.exchanges());
      const ok = list.filter((r) => r.ok);
      const windows: number[] = [];
      const busy: number[] = [];
      const overhead: number[] = [];
      for (const r of ok) {
        const t = timings.get(r.name);
        if (!t) continue;
        windows.push(t.windowMs);
        busy.push(t.busyMs);
        overhead.push(r.ms - t.windowMs);
      }
      const ms = ok.map((r) => r.ms);
      summary[kind] = {
        count: list.length,
        ok: ok.length,
        medianMs: median(ms),
        p90Ms: percentile(ms, 90),
        handshakeMedianMs: median(ok.map((r) => r.handshakeMs)),
        caWindowMedianMs: median(windows),
        caWindowP90Ms: percentile(windows, 90),
        pebbleBusyMedianMs: median(busy),
        overheadMedianMs: median(overhead),
        overheadP90Ms: percentile(overhead, 90),
        idleCpuMsPerS: idleRate.get(kind)!,
        cpuPerCertificateMs: perCertificate.reduce((a, b) => a + b, 0) / perCertificate.length,
        cpuPerCertificateMedianMs: median(perCertificate),
      };
      raw[kind] = { warmups: warmups.get(kind), cpuWindows: cpuWindows.get(kind), results: list, ca: list.map((r) => timings.get(r.name) ?? null) };
    }
    raw.summary = summary;
    const v = (kind: GatewayKind, k: string): number | undefined => summary[kind]?.[k];
    const fr = { section: 'first request', unit: 'ms', better: 'lower' as const };
    const median1 = { ...fr, metric: `First request, median (${s.firstCount} new names)`, certgate: v('certgate', 'medianMs'), caddy: v('caddy', 'medianMs'), target: '≤ 0.8× Caddy' };
    row(ctx, median1);
    const r1 = ctx.rows[ctx.rows.length - 1]!;
    if (r1.ratio !== undefined) r1.pass = r1.ratio <= 0.8;
    row(ctx, { ...fr, metric: 'First request, p90', certgate: v('certgate', 'p90Ms'), caddy: v('caddy', 'p90Ms') });
    row(ctx, { ...fr, metric: 'CA share: Pebble newOrder→cert download, median', certgate: v('certgate', 'caWindowMedianMs'), caddy: v('caddy', 'caWindowMedianMs'), note: 'includes the client poll waits' });
    row(ctx, { ...fr, metric: 'CA share: Pebble answer time per order, median', certgate: v('certgate', 'pebbleBusyMedianMs'), caddy: v('caddy', 'pebbleBusyMedianMs'), note: 'sum of Pebble response times' });
    row(ctx, { ...fr, metric: 'Gateway overhead (first request − CA window), median', certgate: v('certgate', 'overheadMedianMs'), caddy: v('caddy', 'overheadMedianMs') });
    const paced = { section: 'first request', unit: 'ms CPU', better: 'lower' as const };
    row(ctx, { ...paced, metric: 'CPU per issued certificate, one at a time (paced), mean', certgate: v('certgate', 'cpuPerCertificateMs'), caddy: v('caddy', 'cpuPerCertificateMs'), note: `request start → response + ${FIRST_CPU_TAIL_MS} ms, live threads to the ns, minus each process's idle CPU (row below)` });
    row(ctx, { section: 'first request', metric: 'Idle CPU (listening, nothing asked, 3 s)', unit: 'ms CPU/s', certgate: v('certgate', 'idleCpuMsPerS'), caddy: v('caddy', 'idleCpuMsPerS'), better: 'lower' });
    row(ctx, { ...paced, metric: 'CPU per issued certificate, one at a time (paced), median', certgate: v('certgate', 'cpuPerCertificateMedianMs'), caddy: v('caddy', 'cpuPerCertificateMedianMs') });
    const failed = ctx.kinds.filter((k) => (summary[k]?.ok ?? 0) < s.firstCount);
    if (failed.length) row(ctx, { section: 'first request', metric: 'First request failures', unit: 'count', certgate: s.firstCount - (summary.certgate?.ok ?? s.firstCount), caddy: s.firstCount - (summary.caddy?.ok ?? s.firstCount) });
  } finally {
    await set.stop();
    ctx.raw.first = raw;
  }
}

/** How long after a first request's response its CPU window stays open. */
const FIRST_CPU_TAIL_MS = 400;

/** Each gateway's CPU ms per second while nothing is asked of it, over `ms` (all measured at once). */
async function idleCpuRates(set: GatewaySet, kinds: readonly GatewayKind[], ms: number): Promise<Map<GatewayKind, number>> {
  await sleep(500);
  const before = kinds.map((k) => set.gateways.get(k)!.cpuPreciseMs());
  const t0 = now();
  await sleep(ms);
  const elapsed = now() - t0;
  return new Map(kinds.map((k, i) => [k, ((set.gateways.get(k)!.cpuPreciseMs() - before[i]!) / elapsed) * 1000]));
}

// -------------------------------------------------------------------------------------------------
// 2. Burst of new names

export async function burst(ctx: Ctx): Promise<void> {
  const s = ctx.settings;
  const raw: Record<string, unknown> = {};
  const summary: Record<string, Record<string, number | boolean>> = {};
  // One gateway at a time: a burst saturates the machine, so the other must not run alongside.
  for (const kind of ctx.kinds) {
    const rig = ctx.rigs.get(kind)!;
    const set = await startSet(ctx, { label: 'burst', kinds: [kind], spec: () => ({ askOnly: true }) });
    try {
      const warm = await Promise.all(Array.from({ length: s.burstWarmups }, (_, i) => httpsGet(rig.httpsPort, `w${i}-${RUN_TAG}.burst.bench.test`, 60_000)));
      await sleep(500);
      const orders0 = rig.acme.ordersPlaced();
      const issued0 = rig.pebble.certificatesIssued();
      const names = Array.from({ length: s.burstNames }, (_, i) => `b${i}-${RUN_TAG}.burst.bench.test`);
      const results: RequestResult[] = [];
      const gw = set.gateways.get(kind)!;
      const cpu0 = gw.cpuMs();
      let next = 0;
      const t0 = now();
      let bounded = false;
      const worker = async (): Promise<void> => {
        for (;;) {
          if (now() - t0 > s.burstBoundMs) {
            if (next < names.length) bounded = true;
            return;
          }
          const name = names[next++];
          if (name === undefined) return;
          const timeout = Math.min(s.burstRequestTimeoutMs, Math.max(1000, s.burstBoundMs + s.burstTailMs - (now() - t0)));
          results.push(await httpsGet(rig.httpsPort, name, timeout));
        }
      };
      await Promise.all(Array.from({ length: s.burstConcurrency }, worker));
      const wallMs = now() - t0;
      // The gateway's whole process tree: handshakes, ACME, storage, logging, proxying (not
      // Pebble), per certificate Pebble issued in the same time (orders still in flight at the
      // bound cost CPU too, so a bounded run reads a little high).
      const cpuMs = gw.cpuMs() - cpu0;
      const issuedByNow = rig.pebble.certificatesIssued() - issued0;
      await sleep(1000); // Pebble's log lines for the last orders
      const ok = results.filter((r) => r.ok).length;
      const fallback = results.filter((r) => r.status === 200 && !r.rightCertificate).length;
      summary[kind] = {
        attempted: results.length,
        ok,
        fallbackServed: fallback,
        errors: results.filter((r) => !r.ok && !(r.status === 200 && !r.rightCertificate) && !/no response within/.test(r.error ?? '')).length,
        unfinished: results.filter((r) => /no response within/.test(r.error ?? '')).length,
        wallMs,
        bounded,
        orders: rig.acme.ordersPlaced() - orders0,
        certificatesIssued: rig.pebble.certificatesIssued() - issued0,
        perSecond: (ok / wallMs) * 1000,
        gatewayCpuMs: cpuMs,
        ...(issuedByNow > 0 ? { cpuPerCertificateMs: cpuMs / issuedByNow } : {}),
        medianMs: median(results.filter((r) => r.ok).map((r) => r.ms)),
        p90Ms: percentile(
          results.filter((r) => r.ok).map((r) => r.ms),
          90,
        ),
      };
      raw[kind] = { warmup: warm, results: results.map((r) => ({ name: r.name, ok: r.ok, ms: round(r.ms), status: r.status, rightCertificate: r.rightCertificate, error: r.error })) };
      if (kind === 'certgate' && ok < results.length) {
        // Not expected of certgate: keep what the CA saw for the investigation.
        const base = await saveAcmeEvidence(ctx, kind, 'burst');
        log(`burst ${kind}: ${results.length - ok} requests without the right certificate; Pebble output and ACME exchanges saved as ${base}-*`);
      }
      log(`burst ${kind}: ${ok}/${results.length} ok in ${Math.round(wallMs)} ms${bounded ? ' (time bound hit)' : ''}`);
    } finally {
      await set.stop();
    }
  }
  raw.summary = summary;
  ctx.raw.burst = raw;
  const v = (kind: GatewayKind, k: string): number | undefined => {
    const x = summary[kind]?.[k];
    return typeof x === 'number' ? x : undefined;
  };
  const boundNote = ctx.kinds
    .filter((k) => summary[k]?.bounded)
    .map((k) => `${k} hit the bound (no new request after ${s.burstBoundMs / 1000} s, ${summary[k]?.unfinished ?? 0} in flight abandoned ${s.burstTailMs / 1000} s later)`)
    .join('; ');
  const errorNote = ctx.kinds
    .filter((k) => Number(summary[k]?.errors ?? 0) > 0)
    .map((k) => `${k}: ${summary[k]?.errors} requests failed${k === 'caddy' ? ' (TLS alert at once; Caddy 2.6 "on-demand rate limit exceeded" race, see README)' : ''}`)
    .join('; ');
  const b = { section: 'burst' };
  row(ctx, { ...b, metric: `Burst ${s.burstNames} names, ${s.burstConcurrency} at a time: wall time`, unit: 's', certgate: sec(v('certgate', 'wallMs')), caddy: sec(v('caddy', 'wallMs')), better: 'lower', ...(boundNote ? { note: boundNote } : {}) });
  row(ctx, { ...b, metric: 'Burst: successes (right certificate + 200)', unit: `of ${s.burstNames}`, certgate: v('certgate', 'ok'), caddy: v('caddy', 'ok'), better: 'higher', ...(errorNote ? { note: errorNote } : {}) });
  row(ctx, { ...b, metric: 'Burst: orders placed at the CA', unit: 'orders', certgate: v('certgate', 'orders'), caddy: v('caddy', 'orders'), note: 'one per success is ideal' });
  row(ctx, { ...b, metric: 'Burst: certificates served per second', unit: '/s', certgate: v('certgate', 'perSecond'), caddy: v('caddy', 'perSecond'), better: 'higher' });
  row(ctx, { ...b, metric: 'Burst: gateway CPU per issued certificate', unit: 'ms CPU', certgate: v('certgate', 'cpuPerCertificateMs'), caddy: v('caddy', 'cpuPerCertificateMs'), better: 'lower', target: '≤ 1.0× Caddy', note: 'process tree CPU over the burst / certificates Pebble issued meanwhile (Pebble not counted)' });
  const cpuRowLast = ctx.rows[ctx.rows.length - 1]!;
  if (cpuRowLast.ratio !== undefined) cpuRowLast.pass = cpuRowLast.ratio <= 1.0;
  row(ctx, { ...b, metric: 'Burst: time to response, p90', unit: 'ms', certgate: v('certgate', 'p90Ms'), caddy: v('caddy', 'p90Ms'), better: 'lower' });
}

function sec(ms: number | undefined): number | undefined {
  return ms === undefined ? undefined : ms / 1000;
}

// -------------------------------------------------------------------------------------------------
// 3 + 5. Handshakes/s and memory with 1, 10k, 100k certificates in storage

function addRuns(a: HandshakeRun[]): { handshakes: number; elapsedMs: number; perSecond: number; errors: number; wrong: number; resumed: number; nonTls13: number; groups: Record<string, number> } {
  const handshakes = a.reduce((s, r) => s + r.handshakes, 0);
  const groups: Record<string, number> = {};
  for (const r of a) for (const [g, n] of Object.entries(r.groups ?? {})) groups[g] = (groups[g] ?? 0) + n;
  const elapsedMs = a.reduce((s, r) => s + r.elapsedMs, 0);
  return {
    handshakes,
    elapsedMs,
    perSecond: elapsedMs > 0 ? (handshakes / elapsedMs) * 1000 : 0,
    errors: a.reduce((s, r) => s + r.errors, 0),
    wrong: a.reduce((s, r) => s + r.wrongCertificate, 0),
    resumed: a.reduce((s, r) => s + r.resumed, 0),
    nonTls13: a.reduce((s, r) => s + (r.handshakes - r.tls13), 0),
    groups,
  };
}

export async function handshakes(ctx: Ctx): Promise<void> {
  const s = ctx.settings;
  const raw: Record<string, unknown> = {};
  ctx.raw.handshakes = raw;
  for (const tier of s.tiers) {
    const label = tier === 1 ? '1 cert' : `${tier / 1000}k stored`;
    const t: Record<string, unknown> = {};
    raw[String(tier)] = t;
    const seeded = new Map<GatewayKind, Seeded>();
    const releaseAll = async (): Promise<void> => {
      for (const sd of seeded.values()) await sd.release();
    };
    let set: GatewaySet;
    try {
      set = await startSet(ctx, {
        label: `hs-${tier}`,
        prepare: async (kind, storageDir, acmeDirectory) => {
          seeded.set(kind, await seedStorage(kind, storageDir, acmeDirectory, tier));
        },
        readyName: seededName(0),
      });
    } catch (err) {
      await releaseAll();
      throw err;
    }
    const seedMs = new Map([...seeded].map(([k, sd]) => [k, sd.ms]));
    try {
      t.seedMs = Object.fromEntries(seedMs);
      t.coldStartMs = Object.fromEntries(set.startMs);
      t.settleMs = await settle(set, s.settleMaxMs);
      const caddyGw = set.gateways.get('caddy');
      if (caddyGw) t.caddyStorageClean = caddyCleanSeconds(caddyGw.output());
      t.memoryIdle = memories(set.gateways);
      const port = (kind: GatewayKind): number => ctx.rigs.get(kind)!.httpsPort;
      const cpu = new Map<GatewayKind, number>();

      if (tier === 1) {
        // The gateways and the reference servers (tls-reference.ts) take turns at the same load.
        const refs = await startReferences(1);
        const targets = [
          ...ctx.kinds.map((k) => ({ key: k as string, port: port(k), cpu: () => set.gateways.get(k)!.cpuMs() })),
          ...refs.map((x) => ({ key: x.key as string, port: x.port, cpu: () => x.cpuMs() })),
        ];
        let warm: Awaited<ReturnType<typeof handshakeRounds>>;
        try {
          warm = await handshakeRounds(ctx, targets, s.rounds);
        } finally {
          for (const x of refs) await x.stop();
        }
        t.warm = warm;
        row(ctx, rateRow(ctx, `Handshakes/s, ${label} (same name, warm)`, warm));
        cpuRow(ctx, `Gateway CPU per handshake, ${label} (warm)`, warm);
        normalisedCpuRows(ctx, `${label} (warm)`, warm);
        t.defaultGroups = await defaultGroupsRow(ctx, targets.filter((x) => ctx.kinds.includes(x.key as GatewayKind)), label);
        if (s.h2loadConnections > 0) {
          const h2: Record<string, unknown> = {};
          for (const kind of ctx.kinds) h2[kind] = await h2load(port(kind), seededName(0), s.h2loadConnections);
          t.h2load = h2;
          const val = (k: GatewayKind): number | undefined => (h2[k] as { perSecond?: number } | undefined)?.perSecond;
          row(ctx, { section: 'handshakes', metric: `h2load cross-check, ${label}: new TLS connections/s (+1 proxied request each)`, unit: '/s', certgate: val('certgate'), caddy: val('caddy'), better: 'higher', note: `${s.h2loadConnections} connections, offered 2000/s` });
        }
        t.memoryAfter = memories(set.gateways);
      } else {
        // Cold: every name once (name 0 was served at start-up), the gateways taking turns per slice.
        const cold = new Map<GatewayKind, HandshakeRun[]>(ctx.kinds.map((k) => [k, []]));
        const used = new Map<GatewayKind, number>();
        const lastName = Math.min(tier, s.coldMaxNames);
        // The first slice ends at the mark, where memory is read for the per-name slope (row (a)).
        const mark = memoryMark(lastName);
        for (let from = 1, r = 0, count = 0; from < lastName; from += count, r++) {
          count = Math.min(s.coldSlice, lastName - from, from < mark ? mark - from : Infinity);
          let any = false;
          for (const kind of turn(ctx.kinds, r)) {
            const left = s.coldBoundMs - (used.get(kind) ?? 0);
            if (left <= 0) continue;
            any = true;
            const c0 = set.gateways.get(kind)!.cpuMs();
            const res = await handshakeLoad({ port: port(kind), from, count, mode: 'once', concurrency: s.hsConcurrency, durationMs: left });
            cpu.set(kind, (cpu.get(kind) ?? 0) + set.gateways.get(kind)!.cpuMs() - c0);
            cold.get(kind)!.push(res);
            used.set(kind, (used.get(kind) ?? 0) + res.elapsedMs);
          }
          if (from + count === mark) t.memoryAtMark = markReading(set.gateways, cold);
          if (!any) break;
        }
        const coldSum = Object.fromEntries(
          ctx.kinds.map((k) => {
            const a = addRuns(cold.get(k)!);
            return [k, { ...a, touched: a.handshakes + 1, gatewayCpuMs: cpu.get(k), gatewayCpuMsPerHandshake: (cpu.get(k) ?? 0) / Math.max(1, a.handshakes), complete: a.handshakes + a.errors + 1 >= tier, runs: cold.get(k) }];
          }),
        );
        t.cold = coldSum;
        t.memoryAfterCold = memories(set.gateways);
        const touched = (k: GatewayKind): number => (coldSum[k] as { touched: number } | undefined)?.touched ?? 0;
        const partial = ctx.kinds.some((k) => touched(k) < tier);
        row(ctx, rateRow(ctx, `Handshakes/s, ${label}, cache cold (first handshake per name)`, coldSum, partial ? `bounded walk (at most ${lastName} names, ${s.coldBoundMs / 1000} s per gateway): ${ctx.kinds.map((k) => `${k} touched ${touched(k)}`).join(', ')}` : undefined));
        cpuRow(ctx, `Gateway CPU per handshake, ${label}, cold`, coldSum);

        // Warm: a set of names that fits every cache, handshaken a few times first (certgate's
        // workers each have their own cache and the kernel picks the worker per connection).
        const warmFrom = 1;
        for (let p = 0; p < s.warmPrepasses; p++) {
          for (const kind of ctx.kinds) await handshakeLoad({ port: port(kind), from: warmFrom, count: s.warmSet, mode: 'once', concurrency: s.hsConcurrency, durationMs: 60_000 });
        }
        // At the largest tier a third gateway takes its turns too: Caddy with one stored
        // certificate, the reference of the handshake target, measured in the same rounds
        // rather than minutes earlier (the machine's load changes in between).
        const isTop = tier === Math.max(...s.tiers);
        const reference = isTop && ctx.kinds.includes('caddy') ? await startCaddyReference(ctx) : undefined;
        // The reference servers hold a context for every warm name (node) or serve one (openssl).
        const refs = await startReferences(warmFrom + s.warmSet);
        try {
          const targets: RoundTarget[] = ctx.kinds.map((k) => ({ key: k, port: port(k), cpu: () => set.gateways.get(k)!.cpuMs(), names: { from: warmFrom, count: s.warmSet } }));
          if (reference) {
            targets.push({ key: 'caddy1', port: reference.port, cpu: () => reference.gw.cpuMs(), names: { from: 0, count: 1 } });
          }
          for (const x of refs) targets.push({ key: x.key, port: x.port, cpu: () => x.cpuMs(), names: { from: warmFrom, count: s.warmSet } });
          const warmSum = await handshakeRounds(ctx, targets, s.rounds);
          t.warm = warmSum;
          row(ctx, rateRow(ctx, `Handshakes/s, ${label}, cache warm (${s.warmSet} names round-robin)`, warmSum));
          cpuRow(ctx, `Gateway CPU per handshake, ${label}, warm`, warmSum);
          normalisedCpuRows(ctx, `${label}, warm (${s.warmSet} names)`, warmSum);
        } finally {
          for (const x of refs) await x.stop();
          await reference?.stop();
        }
        t.memoryAfterWarm = memories(set.gateways);
        memoryRows(ctx, tier, t, touched);
        memoryTargetRows(ctx, tier, t, touched);
      }
      coldStartRow(ctx, tier, set.startMs);
      if (typeof t.caddyStorageClean === 'number' && t.caddyStorageClean > 1) {
        row(ctx, { section: 'memory / start', metric: `Caddy's start-up storage clean, ${label} (reads every stored certificate)`, unit: 's', caddy: t.caddyStorageClean, better: 'lower', note: 'background, after the cold start; the bench waits for it to end before measuring' });
      }
      if (tier === Math.max(...s.tiers) && ctx.kinds.includes('certgate')) {
        await set.stop();
        // Informational: certgate as one process (`workers: 1`) instead of one per CPU, and
        // through bin/certgate.js without a build (tsx), on the same storage.
        const single = await startSet(ctx, { label: `hs-${tier}-w1`, kinds: ['certgate'], reuseStorageOf: set, readyName: seededName(0), spec: () => ({ certgateExtra: { workers: 1 } }) });
        await settle(single, 5000);
        t.workers1 = { coldStartMs: single.startMs.get('certgate'), memoryIdle: single.gateways.get('certgate')!.memory() };
        await single.stop();
        const w1 = t.workers1 as { coldStartMs: number; memoryIdle: { rssMiB: number } };
        row(ctx, { section: 'memory / start', metric: `Cold start, ${label}: certgate with workers: 1 (one process)`, unit: 'ms', certgate: w1.coldStartMs, better: 'lower', note: 'informational' });
        row(ctx, { section: 'memory / start', metric: `RSS idle, ${label}: certgate with workers: 1`, unit: 'MiB', certgate: w1.memoryIdle.rssMiB, better: 'lower', note: 'informational' });
        if (ctx.certgate.kind === 'compiled' && !s.quick) {
          const tsx = await startSet(ctx, { label: `hs-${tier}-tsx`, kinds: ['certgate'], entry: TSX_ENTRY, reuseStorageOf: set, readyName: seededName(0) });
          t.coldStartTsxMs = tsx.startMs.get('certgate');
          await tsx.stop();
          row(ctx, { section: 'memory / start', metric: `Cold start, ${label}: certgate via bin/certgate.js without a build (tsx)`, unit: 'ms', certgate: t.coldStartTsxMs as number, better: 'lower', note: 'informational' });
        }
      }
    } finally {
      await set.stop();
      await releaseAll();
    }
  }
  // The combined target: certgate at the largest tier (warm) against Caddy with one certificate.
  const top = Math.max(...s.tiers);
  const topWarm = (raw[String(top)] as Record<string, unknown> | undefined)?.warm as Record<string, { perSecond: number }> | undefined;
  const cg = topWarm?.certgate?.perSecond;
  const cd = topWarm?.caddy1?.perSecond;
  if (cg !== undefined && cd !== undefined) {
    row(ctx, {
      section: 'handshakes',
      metric: `TARGET handshakes/s: certgate ${top / 1000}k stored (warm) vs Caddy 1 cert (same rounds)`,
      unit: '/s',
      certgate: cg,
      caddy: cd,
      better: 'higher',
      target: '≥ 1.0×',
      pass: cg / cd >= 1.0,
    });
  }
}

/** Caddy with a single stored certificate on its own ports (no ACME needed: nothing is issued). */
async function startCaddyReference(ctx: Ctx): Promise<ExtraGateway> {
  const prepare = async (storageDir: string): Promise<void> => {
    await seedStorage('caddy', storageDir, ctx.rigs.get('caddy')!.acme.directoryUrl, 1);
  };
  const extra = await startExtraGateway(ctx, 'caddy', 'hs-reference', {}, { prepare, readyName: seededName(0), timeoutMs: 30_000 });
  log(`reference: Caddy with 1 certificate up on 127.0.0.1:${extra.port} (pid ${extra.gw.pid})`);
  return extra;
}

/** Summed rounds of one target, as the CPU rows read them. */
type CpuSums = Record<string, { handshakes: number; gatewayCpuMs?: number | undefined }>;

/** `key`'s CPU ms per handshake over all its rounds; undefined without CPU figures or handshakes. */
function cpuPerHandshake(sums: CpuSums, key: string): number | undefined {
  const x = sums[key];
  return x && x.gatewayCpuMs !== undefined && x.handshakes > 0 ? x.gatewayCpuMs / x.handshakes : undefined;
}

/** CPU time (user + system, whole process tree) the gateway spent per handshake: steadier than rates on a noisy machine. */
function cpuRow(ctx: Ctx, metric: string, sums: CpuSums, note?: string): void {
  row(ctx, { section: 'handshakes', metric, unit: 'ms CPU', certgate: cpuPerHandshake(sums, 'certgate'), caddy: cpuPerHandshake(sums, 'caddy'), better: 'lower', ...(note ? { note } : {}) });
}

/**
 * The same warm rounds with the client offering its OpenSSL defaults (Node 24: X25519MLKEM768
 * first) instead of X25519 alone: what a modern client costs each gateway, informational. The
 * note says what each negotiated (Caddy 2.6 has no ML-KEM, so it still does X25519).
 */
async function defaultGroupsRow(ctx: Ctx, targets: { key: string; port: number; cpu: () => number }[], label: string): Promise<Record<string, unknown>> {
  const sums = await handshakeRounds(ctx, targets, ctx.settings.rounds, { groups: 'default' });
  const note = `the client offers its default groups; negotiated: ${targets.map((x) => `${x.key} ${Object.keys(sums[x.key]?.groups ?? {}).join('/') || '—'}`).join(', ')}; the rows above offer X25519 only`;
  cpuRow(ctx, `Gateway CPU per handshake, ${label} (warm), client's default key exchange`, sums, note);
  return sums;
}

/** A target of the handshake rounds: a gateway or a reference server, and the names it is loaded with. */
interface RoundTarget {
  key: string;
  port: number;
  cpu: () => number;
  names?: { from: number; count: number };
}

/**
 * `rounds` rounds in which every target takes one turn at the same closed-loop load (order
 * reversed every other round), after an unmeasured warm-up of `hsWarmupMs` each: a Node process
 * spends its first tens of seconds of handshakes at up to ~1.5× its later CPU per handshake (JIT
 * tiers, heap growth; measured with bench/tls-layers.ts), Caddy less, and "warm" means after
 * that. Per target: every run, the summed CPU and the CPU per handshake of each round (µs), so
 * rows can compare targets round by round (see pairedMedian).
 */
async function handshakeRounds(ctx: Ctx, targets: RoundTarget[], rounds: number, extra: { groups?: string } = {}): Promise<Record<string, ReturnType<typeof addRuns> & { gatewayCpuMs: number; roundCpuUs: number[]; runs: HandshakeRun[] }>> {
  const s = ctx.settings;
  const runs = new Map<string, HandshakeRun[]>(targets.map((x) => [x.key, []]));
  const cpu = new Map<string, number[]>(targets.map((x) => [x.key, []]));
  const load = (x: RoundTarget, durationMs: number) => handshakeLoad({ port: x.port, ...(x.names ?? { names: [seededName(0)] }), mode: 'loop', concurrency: s.hsConcurrency, durationMs, ...extra });
  for (const x of targets) await load(x, s.hsWarmupMs);
  for (let r = 0; r < rounds; r++) {
    for (const x of turn(targets, r)) {
      const c0 = x.cpu();
      runs.get(x.key)!.push(await load(x, s.roundMs));
      cpu.get(x.key)!.push(x.cpu() - c0);
    }
  }
  return Object.fromEntries(
    targets.map((x) => {
      const list = runs.get(x.key)!;
      const ms = cpu.get(x.key)!;
      return [x.key, { ...addRuns(list), gatewayCpuMs: ms.reduce((a, b) => a + b, 0), roundCpuUs: ms.map((m, i) => (list[i]!.handshakes > 0 ? (m * 1000) / list[i]!.handshakes : Number.NaN)), runs: list }];
    }),
  );
}

/**
 * The median over rounds of a's figure ÷ b's in the same round, and the range: paired rounds
 * cancel the drift of a shared machine (a round's targets run seconds apart; rounds, minutes).
 */
function pairedMedian(a: number[] | undefined, b: number[] | undefined): { median: number; min: number; max: number; n: number } | undefined {
  if (!a || !b) return undefined;
  const r = a.map((x, i) => x / b[i]!).filter((x) => Number.isFinite(x) && x > 0);
  return r.length === 0 ? undefined : { median: median(r), min: Math.min(...r), max: Math.max(...r), n: r.length };
}

/** The reference servers of the CPU rows; openssl only where the command exists. */
async function startReferences(names: number): Promise<TlsReference[]> {
  const refs: TlsReference[] = [];
  try {
    if (haveCommand('openssl')) refs.push(await startOpensslReference());
    refs.push(await startNodeReference(names));
  } catch (err) {
    for (const x of refs) await x.stop();
    throw err;
  }
  return refs;
}

/**
 * CPU per handshake normalised to the reference servers measured in the same rounds: to openssl
 * s_server (what the issue's aim is stated in) and to a bare node:https server (Node's floor;
 * certgate − that is certgate's own code). Each figure is a median of per-round quotients, not a
 * quotient of sums: on this shared 2-CPU machine one server's CPU per handshake swings ±30% from
 * round to round, and two rounds of sums read certgate ÷ Caddy anywhere from 0.9 to 1.4.
 * The references' own figures are in the note.
 */
function normalisedCpuRows(ctx: Ctx, label: string, sums: Record<string, { handshakes: number; gatewayCpuMs?: number | undefined; groups?: Record<string, number>; roundCpuUs?: number[] }>): void {
  const per = (k: string): number | undefined => cpuPerHandshake(sums, k);
  const rounds = (k: string): number[] | undefined => sums[k]?.roundCpuUs;
  // certgate ÷ Caddy round by round: the same for both normalisations (the reference cancels).
  const head = pairedMedian(rounds('certgate'), rounds('caddy'));
  const groups = [...new Set(Object.values(sums).flatMap((x) => Object.keys(x.groups ?? {})))].join('/') || '—';
  const spread = head ? `; certgate ÷ Caddy per round ${head.min.toFixed(2)}-${head.max.toFixed(2)}, median of ${head.n} paired rounds in the ratio column` : '';
  const note = `CPU per handshake: openssl s_server ${per('openssl')?.toFixed(3) ?? '—'} ms, bare node:https ${per('node')?.toFixed(3) ?? '—'} ms; each column the median over rounds of the gateway's figure ÷ the reference's in the same round${spread}; key exchange negotiated: ${groups}`;
  for (const [key, name] of [['openssl', 'openssl s_server'], ['node', 'a bare node:https server']] as const) {
    if (!rounds(key)) continue;
    const norm = (k: string): number | undefined => pairedMedian(rounds(k), rounds(key))?.median;
    const r = { section: 'handshakes', metric: `Gateway CPU per handshake, ${label}, normalised to ${name}`, unit: '×', certgate: norm('certgate'), caddy: norm('caddy'), ...(head ? { ratio: head.median, ratioOf: 'paired-rounds' as const } : {}), better: 'lower' as const, note };
    if (key === 'openssl') {
      row(ctx, { ...r, target: '≤ 1.0× Caddy' });
      const last = ctx.rows[ctx.rows.length - 1]!;
      if (last.ratio !== undefined) last.pass = last.ratio <= 1.0;
    } else row(ctx, r);
  }
}

function rateRow(ctx: Ctx, metric: string, sums: Record<string, { perSecond: number; errors: number; wrong: number; resumed: number; nonTls13: number }>, extraNote?: string): Parameters<typeof row>[1] {
  const notes: string[] = [];
  for (const k of ctx.kinds) {
    const x = sums[k];
    if (!x) continue;
    if (x.errors) notes.push(`${k}: ${x.errors} errors`);
    if (x.wrong) notes.push(`${k}: ${x.wrong} wrong certificates`);
    if (x.resumed) notes.push(`${k}: ${x.resumed} resumed!`);
    if (x.nonTls13) notes.push(`${k}: ${x.nonTls13} not TLS 1.3!`);
  }
  if (extraNote) notes.push(extraNote);
  return { section: 'handshakes', metric, unit: '/s', certgate: sums.certgate?.perSecond, caddy: sums.caddy?.perSecond, better: 'higher', ...(notes.length ? { note: notes.join('; ') } : {}) };
}

function memories(gws: Map<GatewayKind, { memory(): { rssMiB: number; pssMiB: number | null; processes: number } }>): Record<string, unknown> {
  return Object.fromEntries([...gws].map(([k, g]) => [k, g.memory()]));
}

function memoryRows(ctx: Ctx, tier: number, t: Record<string, unknown>, touched: (k: GatewayKind) => number): void {
  const label = `${tier / 1000}k stored`;
  const rss = (key: string, k: GatewayKind): number | undefined => ((t[key] as Record<string, { rssMiB: number }> | undefined)?.[k])?.rssMiB;
  const pss = (key: string, k: GatewayKind): number | undefined => ((t[key] as Record<string, { pssMiB: number | null }> | undefined)?.[k])?.pssMiB ?? undefined;
  const m = { section: 'memory / start', unit: 'MiB', better: 'lower' as const };
  row(ctx, { ...m, metric: `RSS idle after start, ${label}`, certgate: rss('memoryIdle', 'certgate'), caddy: rss('memoryIdle', 'caddy') });
  const n = ctx.kinds.map((k) => `${k} ${touched(k)}`).join(', ');
  // The memory targets are memoryTargetRows' (issue 19 restated the old "RSS ≤ 0.5× Caddy").
  row(ctx, { ...m, metric: `RSS after cold pass, ${label} (names touched: ${n})`, certgate: rss('memoryAfterCold', 'certgate'), caddy: rss('memoryAfterCold', 'caddy'), note: 'sum over the process tree' });
  row(ctx, { ...m, metric: `PSS after cold pass, ${label} (shared pages split)`, certgate: pss('memoryAfterCold', 'certgate'), caddy: pss('memoryAfterCold', 'caddy') });
}

/** Names served when memory is read for the slope: 1,000, or a tenth of a shorter walk (smoke). */
const MEMORY_MARK_NAMES = 1000;
/** Both gateways' default certificate cache, per process: certgate `tls.cacheSize`, certmagic's capacity. */
const DEFAULT_CACHE_NAMES = 10_000;

function memoryMark(lastName: number): number {
  return Math.max(2, Math.min(MEMORY_MARK_NAMES, Math.floor(lastName / 10)));
}

/** Each gateway's memory and the names it has been served so far (name 0 at start-up counts). */
function markReading(gws: GatewaySet['gateways'], cold: Map<GatewayKind, HandshakeRun[]>): Record<string, unknown> {
  return Object.fromEntries([...gws].map(([k, g]) => [k, { ...g.memory(), touched: addRuns(cold.get(k) ?? []).handshakes + 1 }]));
}

/**
 * Issue 19's memory rows, beside Caddy's: (a) memory each extra cached name adds between the
 * mark (~1k names served) and the end of the cold walk, per name that entered a cache (both
 * gateways cache 10,000 per process; with several certgate workers each has its own, so the
 * figure is then per name served); (b) certgate's whole tree in PSS against Caddy's RSS after
 * the walk; (c) the processes the default `workers` starts (auto: one on ≤ 2 CPUs).
 */
function memoryTargetRows(ctx: Ctx, tier: number, t: Record<string, unknown>, touched: (k: GatewayKind) => number): void {
  const label = `${tier / 1000}k stored`;
  const isTop = tier === Math.max(...ctx.settings.tiers);
  type Reading = { rssMiB: number; pssMiB: number | null; processes: number; touched?: number };
  const at = (key: string, k: GatewayKind): Reading | undefined => (t[key] as Record<string, Reading> | undefined)?.[k];
  const slope = (k: GatewayKind): number | undefined => {
    const a = at('memoryAtMark', k);
    const b = at('memoryAfterCold', k);
    if (!a || !b || a.touched === undefined) return undefined;
    const processes = k === 'certgate' ? Math.max(1, b.processes - (b.processes > 1 ? 1 : 0)) : 1;
    const cached = (n: number): number => Math.min(n, DEFAULT_CACHE_NAMES * processes);
    const extra = cached(touched(k)) - cached(a.touched);
    return extra > 0 ? ((b.rssMiB - a.rssMiB) * 1024) / extra : undefined;
  };
  const marks = ctx.kinds.map((k) => `${k} ${at('memoryAtMark', k)?.touched ?? '?'} → ${touched(k)}`).join(', ');
  const cg = slope('certgate');
  const cd = slope('caddy');
  row(ctx, {
    section: 'memory / start',
    metric: `(a) Memory per extra cached name, ${label} (RSS slope, names served ${marks})`,
    unit: 'KiB',
    certgate: cg,
    caddy: cd,
    better: 'lower',
    ...(isTop ? { target: '≤ 1.0× Caddy', ...(cg !== undefined && cd !== undefined && cd > 0 ? { pass: cg <= cd } : {}) } : {}),
    note: `per name entering a cache (${DEFAULT_CACHE_NAMES} per process); default config`,
  });
  const pss = at('memoryAfterCold', 'certgate')?.pssMiB ?? undefined;
  const caddyRss = at('memoryAfterCold', 'caddy')?.rssMiB;
  row(ctx, {
    section: 'memory / start',
    metric: `(b) TARGET memory after the cold pass, ${label}: certgate PSS (whole tree) vs Caddy RSS`,
    unit: 'MiB',
    certgate: pss,
    caddy: caddyRss,
    better: 'lower',
    ...(isTop ? { target: '≤ 1.5× Caddy', ...(pss !== undefined && caddyRss ? { pass: pss / caddyRss <= 1.5 } : {}) } : {}),
    note: `names served: ${ctx.kinds.map((k) => `${k} ${touched(k)}`).join(', ')}; default workers`,
  });
  if (!isTop) return;
  const procs = (k: GatewayKind): number | undefined => at('memoryAfterCold', k)?.processes;
  const cpus = availableParallelism();
  const cgProcs = procs('certgate');
  row(ctx, {
    section: 'memory / start',
    metric: `(c) Processes with the default workers (${cpus} CPUs)`,
    unit: 'processes',
    certgate: cgProcs,
    caddy: procs('caddy'),
    better: 'lower',
    target: cpus <= 2 ? '1 on ≤ 2 CPUs' : `${cpus} workers + primary`,
    ...(cgProcs !== undefined ? { pass: cgProcs === (cpus <= 2 ? 1 : cpus + 1) } : {}),
  });
}

function coldStartRow(ctx: Ctx, tier: number, startMs: Map<GatewayKind, number>): void {
  const label = tier === 1 ? '1 cert' : `${tier / 1000}k stored`;
  const isTop = tier === Math.max(...ctx.settings.tiers);
  const cg = startMs.get('certgate');
  row(ctx, {
    section: 'memory / start',
    metric: `Cold start (spawn → first handshake serving a stored name), ${label}`,
    unit: 'ms',
    certgate: cg,
    caddy: startMs.get('caddy'),
    better: 'lower',
    ...(isTop ? { target: '< 1000 ms', ...(cg !== undefined ? { pass: cg < 1000 } : {}) } : {}),
  });
}

/** Seconds Caddy spent on its start-up storage clean (it reads every stored certificate), from its log. */
function caddyCleanSeconds(output: string): number | null {
  const start = /"ts":([\d.]+),"logger":"tls","msg":"cleaning storage unit"/.exec(output);
  const end = /"ts":([\d.]+),"logger":"tls","msg":"finished cleaning storage units"/.exec(output);
  return start && end ? Number(end[1]) - Number(start[1]) : null;
}

async function h2load(port: number, name: string, connections: number): Promise<Record<string, unknown>> {
  // Open loop: 100 new connections every 50 ms (2000/s offered), each one TLS 1.3 handshake and
  // one HTTP/1.1 request; the figure is connections completed per second of the run.
  const args = ['-n', String(connections), '-c', String(connections), '-r', '100', '--rate-period=50ms', '-t', '1', '--h1', `--connect-to=127.0.0.1:${port}`, `https://${name}/`];
  const r = await run('h2load', args, { timeoutMs: 120_000 });
  const out = r.stdout + r.stderr;
  const fin = /finished in ([\d.]+)(ms|s), ([\d.]+) req\/s/.exec(out);
  const ok = /(\d+) succeeded/.exec(out);
  const proto = /TLS Protocol: (\S+)/.exec(out)?.[1];
  const secs = fin ? (fin[2] === 'ms' ? Number(fin[1]) / 1000 : Number(fin[1])) : Number.NaN;
  return { perSecond: ok && fin ? Number(ok[1]) / secs : undefined, succeeded: ok ? Number(ok[1]) : 0, seconds: secs, protocol: proto, args, output: out.slice(-1500) };
}

// -------------------------------------------------------------------------------------------------
// 4. Keep-alive proxy throughput

const H2LOAD = { threads: 2, connections: 10, streams: 10 };

/**
 * The HTTP/2 figure beside wrk's: h2load -t2 -c10 -m10 for the same rounds and seconds, gateways
 * in turns, both speaking HTTP/1.1 to the same upstream (the `localhost` certificate, as for wrk).
 */
async function h2Throughput(ctx: Ctx, set: GatewaySet, raw: Record<string, unknown>): Promise<void> {
  const s = ctx.settings;
  const runs = new Map<GatewayKind, H2loadRun[]>(ctx.kinds.map((k) => [k, []]));
  const cpu = new Map<GatewayKind, number>();
  const target = (k: GatewayKind) => {
    const port = ctx.rigs.get(k)!.httpsPort;
    return [`https://localhost:${port}/`, `127.0.0.1:${port}`] as const;
  };
  for (const k of ctx.kinds) await h2loadRun(...target(k), { ...H2LOAD, seconds: 1 }); // warm-up
  for (let r = 0; r < s.wrkRounds; r++) {
    for (const k of turn(ctx.kinds, r)) {
      const gw = set.gateways.get(k);
      const c0 = gw?.cpuMs() ?? 0;
      runs.get(k)!.push(await h2loadRun(...target(k), { ...H2LOAD, seconds: s.wrkSeconds }));
      if (gw) cpu.set(k, (cpu.get(k) ?? 0) + gw.cpuMs() - c0);
    }
  }
  const rps = (k: GatewayKind): number | undefined => {
    const list = runs.get(k);
    if (!list?.length) return undefined;
    return list.reduce((a, w) => a + w.succeeded, 0) / list.reduce((a, w) => a + w.durationS, 0);
  };
  const h2: Record<string, unknown> = {};
  for (const k of ctx.kinds) h2[k] = { requestsPerSecond: rps(k), gatewayCpuMs: cpu.get(k), runs: runs.get(k)!.map(({ raw: text, ...rest }) => ({ ...rest, raw: text.slice(-1500) })) };
  raw.h2 = h2;
  const notes = ctx.kinds.flatMap((k) => runs.get(k)!.flatMap((w) => [w.protocol === 'h2' ? '' : `${k}: protocol ${w.protocol ?? 'none'}`, w.failed ? `${k}: ${w.failed} failed` : ''])).filter(Boolean);
  row(ctx, {
    section: 'proxy',
    metric: `HTTP/2 proxy req/s (h2load -t2 -c10 -m10, ${s.wrkRounds}×${s.wrkSeconds} s, access log off)`,
    unit: 'req/s',
    certgate: rps('certgate'),
    caddy: rps('caddy'),
    better: 'higher',
    ...(notes.length ? { note: [...new Set(notes)].join('; ') } : {}),
  });
}

export async function proxyThroughput(ctx: Ctx): Promise<void> {
  const s = ctx.settings;
  const lh = await localhostCertificate();
  // SNI `localhost` (wrk sends the URL host as SNI; no /etc/hosts changes): certgate refuses
  // single-label names and serves its fallback (`tls.denied: fallback`: the default alert would
  // refuse them), configured to be the same bench-CA certificate for `localhost` that Caddy loads
  // from storage. Both serve one ECDSA P-256 certificate.
  const certgateSpec = { fallback: { cert: lh.cert, key: lh.key }, certgateExtra: { tls: { fallback: { cert: lh.cert, key: lh.key }, denied: 'fallback' } } };
  const set = await startSet(ctx, {
    label: 'proxy',
    spec: (kind) => (kind === 'certgate' ? certgateSpec : {}),
    prepare: async (kind, dir, acme) => {
      if (kind === 'caddy') await seedCaddyLocalhost(dir, acme);
    },
  });
  // certgate with its default access log on (one JSON line per request to stdout, which the bench
  // reads through a pipe and appends to a file, as journald or a collector would), in the same rounds.
  const withLog = s.accessLogRow && ctx.kinds.includes('certgate') ? await startExtraCertgate(ctx, 'proxy-accesslog', { ...certgateSpec, accessLog: true }).catch(async (err: unknown) => {
    await set.stop();
    throw err;
  }) : undefined;
  const raw: Record<string, unknown> = {};
  ctx.raw.proxy = raw;
  const targets: { key: string; url: string; cpu?: () => number }[] = [
    { key: 'upstream', url: `http://127.0.0.1:${ctx.upstream.port}/` },
    ...ctx.kinds.map((k) => ({ key: k, url: `https://localhost:${ctx.rigs.get(k)!.httpsPort}/`, cpu: () => set.gateways.get(k)!.cpuMs() })),
    ...(withLog ? [{ key: 'certgateAccessLog', url: `https://localhost:${withLog.port}/`, cpu: () => withLog.gw.cpuMs() }] : []),
  ];
  const runs = new Map<string, WrkRun[]>(targets.map((t) => [t.key, []]));
  /** CPU ms of each round, per target with a process (none for the upstream alone). */
  const roundCpu = new Map<string, number[]>(targets.map((t) => [t.key, []]));
  try {
    await settle(set, 5000);
    for (const t of targets) await wrk(t.url, { threads: 2, connections: 50, seconds: 1 }); // warm-up
    for (let r = 0; r < s.wrkRounds; r++) {
      for (const t of turn(targets, r)) {
        const c0 = t.cpu?.() ?? 0;
        runs.get(t.key)!.push(await wrk(t.url, { threads: 2, connections: 50, seconds: s.wrkSeconds }));
        if (t.cpu) roundCpu.get(t.key)!.push(t.cpu() - c0);
      }
    }
    const rps = (key: string): number | undefined => {
      const list = runs.get(key);
      if (!list?.length) return undefined;
      return list.reduce((a, w) => a + w.requests, 0) / list.reduce((a, w) => a + w.durationS, 0);
    };
    for (const t of targets) {
      const gw = t.key === 'certgateAccessLog' ? withLog?.gw : set.gateways.get(t.key as GatewayKind);
      raw[t.key] = { requestsPerSecond: rps(t.key), gatewayCpuMs: t.cpu ? roundCpu.get(t.key)!.reduce((a, b) => a + b, 0) : undefined, processes: gw?.memory().processes, runs: runs.get(t.key)!.map(({ raw: text, ...rest }) => ({ ...rest, raw: text.slice(0, 1500) })) };
    }
    const errs = ctx.kinds.map((k) => runs.get(k)!.map((w) => [w.errors, w.non2xx ? `${w.non2xx} non-2xx` : ''].filter(Boolean).join(' ')).filter(Boolean).map((e) => `${k}: ${e}`)).flat();
    row(ctx, {
      section: 'proxy',
      metric: `Keep-alive proxy req/s (wrk -t2 -c50, ${s.wrkRounds}×${s.wrkSeconds} s, access log off)`,
      unit: 'req/s',
      certgate: rps('certgate'),
      caddy: rps('caddy'),
      better: 'higher',
      target: '≥ 1.0× Caddy',
      ...(errs.length ? { note: errs.join('; ') } : {}),
    });
    const last = ctx.rows[ctx.rows.length - 1]!;
    if (last.ratio !== undefined) last.pass = last.ratio >= 1.0;
    const withCaddy = ctx.kinds.includes('caddy');
    row(ctx, { section: 'proxy', metric: 'Upstream alone, plain HTTP (ceiling)', unit: 'req/s', certgate: rps('upstream'), ...(withCaddy ? { caddy: rps('upstream'), note: 'same figure in both columns: no gateway' } : {}) });
    await h2Throughput(ctx, set, raw);
    if (withLog) accessLogRows(ctx, rps('certgateAccessLog'), { on: roundCpu.get('certgateAccessLog')!, off: roundCpu.get('certgate')! }, { on: runs.get('certgateAccessLog')!, off: runs.get('certgate')! });
  } finally {
    await withLog?.stop();
    await set.stop();
  }
}

/**
 * The access log's cost, from the same rounds: req/s with the log on, and on / off (the ratio
 * column holds on/off here, not a Caddy ratio: Caddy logs no access by default); CPU per request.
 * On / off is the median over rounds of each round's pair (see pairedMedian): two gateways run
 * side by side, so the drift between rounds cancels.
 */
function accessLogRows(ctx: Ctx, on: number | undefined, cpuMs: { on: number[]; off: number[] }, runs: { on: WrkRun[]; off: WrkRun[] }): void {
  row(ctx, { section: 'proxy', metric: 'Keep-alive proxy req/s, certgate with its default access log on (same rounds)', unit: 'req/s', certgate: on, better: 'higher', note: 'Caddy logs no access by default' });
  const rate = (list: WrkRun[]): number[] => list.map((w) => (w.durationS > 0 ? w.requests / w.durationS : Number.NaN));
  const share = pairedMedian(rate(runs.on), rate(runs.off));
  if (!share) return;
  const spread = `median of ${share.n} paired rounds, ${share.min.toFixed(2)}-${share.max.toFixed(2)}`;
  row(ctx, { section: 'proxy', metric: 'Access log on / off, certgate keep-alive req/s (same rounds)', unit: '×', certgate: share.median, ratio: share.median, better: 'higher', target: '≥ 0.90', pass: share.median >= 0.9, note: spread });
  const perRequestUs = (ms: number[], list: WrkRun[]): number[] => ms.map((m, i) => (list[i]!.requests > 0 ? (m / list[i]!.requests) * 1000 : Number.NaN));
  const onUs = perRequestUs(cpuMs.on, runs.on);
  const offUs = perRequestUs(cpuMs.off, runs.off);
  const cost = pairedMedian(onUs, offUs);
  if (cost) {
    row(ctx, { section: 'proxy', metric: 'certgate CPU per proxied request, access log on (same rounds)', unit: 'µs CPU', certgate: median(onUs), ratio: cost.median, better: 'lower', note: `ratio: on / off per round, median of ${cost.n} (${cost.min.toFixed(2)}-${cost.max.toFixed(2)}); off: ${median(offUs).toFixed(1)} µs` });
  }
}
