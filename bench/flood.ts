// 6. Flood of names that get no certificate: `floodNames` handshakes with random names (below
// flood.example: no gateway approves them; Caddy asks `ask`, which refuses), `floodConcurrency`
// at a time, one gateway at a time in turns; meanwhile a real client makes one handshake at a
// time for a name with a certificate, and its p99 is the figure a customer feels. A refused
// handshake counts as answered whether the gateway sends an alert (certgate's default
// `tls.denied: alert`, Caddy) or completes it with a fallback certificate (`tls.denied:
// fallback`, informational third gateway). Gateway CPU per flood handshake includes the real
// client's few handshakes.
import { cp } from 'node:fs/promises';
import { join } from 'node:path';
import { row, startSet, turn, type Ctx } from './context.ts';
import { startExtraCertgate, type ExtraGateway } from './extra-gateway.ts';
import { waitUntilServing } from './gateways.ts';
import { handshakeLoad, type HandshakeRun } from './loadgen.ts';
import { log, median } from './util.ts';

const REAL_NAME = `real-${Date.now().toString(36).slice(-4)}.flood.bench.test`;

interface Target {
  key: string;
  port: number;
  cpu: () => number;
}

interface FloodRound {
  flood: HandshakeRun;
  real: HandshakeRun;
  gatewayCpuMs: number;
}

/** The flood section: see the header. */
export async function flood(ctx: Ctx): Promise<void> {
  const s = ctx.settings;
  // certgate with its default `onDemand.limits` (perClient: 5/s, burst 100): the flood comes
  // from one client address, as an attacker's would; the other sections raise the bucket only
  // because all their "customers" share the loopback address.
  const set = await startSet(ctx, { label: 'flood', spec: () => ({ defaultLimits: true }) });
  let fallback: ExtraGateway | undefined;
  const raw: Record<string, unknown> = { realName: REAL_NAME, names: s.floodNames, concurrency: s.floodConcurrency };
  ctx.raw.flood = raw;
  try {
    // The real client's name gets its certificate first (an order at the gateway's Pebble).
    for (const kind of ctx.kinds) await waitUntilServing(set.gateways.get(kind)!, REAL_NAME, { timeoutMs: 90_000, intervalMs: 200 });
    if (s.floodFallbackRow && ctx.kinds.includes('certgate')) {
      // Its own ports, which certgate's Pebble does not validate against: it starts with a copy
      // of certgate's certificates instead of ordering.
      const copy = (dir: string) => cp(join(set.storage.get('certgate')!, 'certificates'), join(dir, 'certificates'), { recursive: true });
      fallback = await startExtraCertgate(ctx, 'flood-fallback', { defaultLimits: true, certgateExtra: { tls: { denied: 'fallback' } } }, copy);
      await waitUntilServing(fallback.gw, REAL_NAME, { timeoutMs: 30_000, intervalMs: 50 });
    }
    const targets: Target[] = [
      ...ctx.kinds.map((k) => ({ key: k as string, port: ctx.rigs.get(k)!.httpsPort, cpu: () => set.gateways.get(k)!.cpuMs() })),
      ...(fallback ? [{ key: 'certgateFallback', port: fallback.port, cpu: () => fallback!.gw.cpuMs() }] : []),
    ];
    const rounds = new Map<string, FloodRound[]>(targets.map((t) => [t.key, []]));
    for (let r = 0; r < s.floodRounds; r++) {
      for (const t of turn(targets, r)) {
        const c0 = t.cpu();
        const [floodRun, real] = await Promise.all([
          handshakeLoad({ port: t.port, random: { count: s.floodNames, suffix: `r${r}.flood.example` }, mode: 'once', concurrency: s.floodConcurrency, durationMs: 120_000 }),
          handshakeLoad({ port: t.port, names: [REAL_NAME], mode: 'loop', concurrency: 1, durationMs: s.floodRealMs, checkEvery: 1 }),
        ]);
        rounds.get(t.key)!.push({ flood: floodRun, real, gatewayCpuMs: t.cpu() - c0 });
        log(`flood ${t.key}: ${Math.round(floodRun.answeredPerSecond)}/s answered (${floodRun.alerts} alerts, ${floodRun.handshakes} full, ${floodRun.errors} errors); real client p99 ${real.latencyMs.p99.toFixed(1)} ms`);
      }
    }
    const summary = Object.fromEntries([...rounds].map(([key, list]) => [key, summarise(list)]));
    raw.summary = summary;
    raw.rounds = Object.fromEntries(rounds);
    floodRows(ctx, summary);
  } finally {
    await fallback?.stop();
    await set.stop();
  }
}

type Summary = ReturnType<typeof summarise>;

function summarise(list: FloodRound[]) {
  const floods = list.map((x) => x.flood);
  const answered = floods.reduce((a, f) => a + f.handshakes + f.alerts, 0);
  return {
    answeredPerSecond: median(floods.map((f) => f.answeredPerSecond)),
    alerts: floods.reduce((a, f) => a + f.alerts, 0),
    fullHandshakes: floods.reduce((a, f) => a + f.handshakes, 0),
    errors: floods.reduce((a, f) => a + f.errors, 0),
    realP99Ms: median(list.map((x) => x.real.latencyMs.p99)),
    realP50Ms: median(list.map((x) => x.real.latencyMs.p50)),
    realHandshakes: list.reduce((a, x) => a + x.real.handshakes, 0),
    realErrors: list.reduce((a, x) => a + x.real.errors + x.real.wrongCertificate, 0),
    cpuPerHandshakeMs: answered > 0 ? list.reduce((a, x) => a + x.gatewayCpuMs, 0) / answered : undefined,
  };
}

function floodRows(ctx: Ctx, sum: Record<string, Summary>): void {
  const s = ctx.settings;
  const v = (key: string, f: keyof Summary): number | undefined => sum[key]?.[f];
  const how = (key: string): string => (sum[key] ? `${key}: ${sum[key].alerts} alerts, ${sum[key].fullHandshakes} full handshakes, ${sum[key].errors} errors` : '');
  const note = ctx.kinds.map(how).join('; ');
  const rate = { section: 'flood', metric: `Flood: ${s.floodNames} random names, ${s.floodConcurrency} at a time: handshakes answered/s`, unit: '/s', certgate: v('certgate', 'answeredPerSecond'), caddy: v('caddy', 'answeredPerSecond'), better: 'higher' as const, target: '≥ 1.0× Caddy', note };
  row(ctx, rate);
  const r1 = ctx.rows[ctx.rows.length - 1]!;
  if (r1.ratio !== undefined) r1.pass = r1.ratio >= 1.0;
  row(ctx, { section: 'flood', metric: "Flood: a real client's handshake p99 during it (one at a time, a name with a certificate)", unit: 'ms', certgate: v('certgate', 'realP99Ms'), caddy: v('caddy', 'realP99Ms'), better: 'lower', target: '≤ 2× Caddy' });
  const r2 = ctx.rows[ctx.rows.length - 1]!;
  if (r2.ratio !== undefined) r2.pass = r2.ratio <= 2.0;
  row(ctx, { section: 'flood', metric: 'Flood: gateway CPU per flood handshake', unit: 'ms CPU', certgate: v('certgate', 'cpuPerHandshakeMs'), caddy: v('caddy', 'cpuPerHandshakeMs'), better: 'lower' });
  if (sum.certgateFallback) {
    row(ctx, { section: 'flood', metric: 'Flood answered/s, certgate with tls.denied: fallback (same rounds)', unit: '/s', certgate: v('certgateFallback', 'answeredPerSecond'), better: 'higher', note: how('certgateFallback') });
    row(ctx, { section: 'flood', metric: "Flood: real client's p99, certgate with tls.denied: fallback", unit: 'ms', certgate: v('certgateFallback', 'realP99Ms'), better: 'lower' });
    row(ctx, { section: 'flood', metric: 'Flood: CPU per flood handshake, certgate with tls.denied: fallback', unit: 'ms CPU', certgate: v('certgateFallback', 'cpuPerHandshakeMs'), better: 'lower' });
  }
}
