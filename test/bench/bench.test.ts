// Issue 3 acceptance: `npm run bench` runs certgate and Caddy, each against its own Pebble, through
// every section, and reports figures that are there and sound: each first request and burst name
// answered with its own certificate, seeded certificates served at every stored count, memory and
// start-up read for both, proxy throughput for both and for the upstream alone (and certgate with its
// access log on, same rounds), a flood of random names answered by both, ratios =
// certgate / Caddy. Run with --smoke (smallest counts, ~40 s). How fast is never asserted here:
// speed is what `npm run bench` itself reports.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Row } from '../../bench/context.ts';
import { NODE, PROJECT_ROOT } from '../support/process.ts';

interface Attempt {
  name: string;
  ok: boolean;
  rightCertificate: boolean;
}
interface HandshakeFigures {
  handshakes: number;
  errors: number;
  wrong: number;
  touched?: number;
  complete?: boolean;
}
type PerGateway<T> = Record<'certgate' | 'caddy', T>;
interface Results {
  gateways: string[];
  settings: { firstCount: number; burstNames: number; tiers: number[] };
  sectionTimesMs: Record<string, number>;
  rows: Row[];
  raw: {
    first: PerGateway<{ results: Attempt[] }>;
    burst: PerGateway<{ results: Attempt[] }>;
    handshakes: Record<string, { warm: PerGateway<HandshakeFigures>; cold?: PerGateway<HandshakeFigures>; memoryIdle: PerGateway<{ rssMiB: number }> }>;
    proxy: { upstream: { requestsPerSecond: number }; h2: PerGateway<{ runs: Array<{ protocol?: string; failed: number }> }> } & PerGateway<{ requestsPerSecond: number }>;
    flood: { summary: PerGateway<{ alerts: number; fullHandshakes: number; errors: number; realHandshakes: number; realErrors: number }> };
  };
}

const BOUND_MS = 170_000;
const TOOLS = ['/usr/bin/caddy', '/usr/bin/wrk', '/usr/bin/h2load'];

describe('npm run bench (--smoke)', () => {
  let dir: string;
  let results: Results;
  let table: string;

  before(async () => {
    const missing = TOOLS.filter((t) => !existsSync(t));
    assert.deepEqual(missing, [], 'npm test installs caddy, wrk and nghttp2-client (scripts/setup.mjs); as root: apt-get install -y caddy wrk nghttp2-client');
    dir = await mkdtemp(join(tmpdir(), 'certgate-bench-test-'));
    const out = join(dir, 'results.json');
    // Its own process group, so that a run past the bound is stopped with everything it started.
    const child = spawn(NODE, ['--import', 'tsx', 'bench/run.ts', '--smoke', '--out', out], { cwd: PROJECT_ROOT, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (output += c.toString('utf8')));
    const code = await new Promise<number | null>((resolve) => {
      const bound = setTimeout(() => process.kill(-child.pid!, 'SIGKILL'), BOUND_MS);
      child.once('exit', (exitCode) => {
        clearTimeout(bound);
        resolve(exitCode);
      });
    });
    assert.equal(code, 0, `bench exited ${code}:\n${output.slice(-6000)}`);
    table = output;
    results = JSON.parse(await readFile(out, 'utf8')) as Results;
  });

  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const row = (pattern: RegExp): Row => {
    const found = results.rows.filter((r) => pattern.test(r.metric));
    assert.equal(found.length, 1, `one row matching ${pattern}: ${found.map((r) => r.metric).join(' | ')}`);
    return found[0]!;
  };
  const both = (pattern: RegExp): Row => {
    const r = row(pattern);
    for (const kind of ['certgate', 'caddy'] as const) assert.ok(typeof r[kind] === 'number' && r[kind] > 0, `${r.metric}: ${kind} = ${r[kind]}`);
    return r;
  };

  test('both gateways ran every section, and the table was printed', () => {
    assert.deepEqual(results.gateways, ['certgate', 'caddy']);
    assert.deepEqual(Object.keys(results.sectionTimesMs).sort(), ['burst', 'first', 'flood', 'handshakes', 'proxy']);
    assert.deepEqual(results.rows.filter((r) => /FAILED/.test(r.metric)), []);
    assert.match(table, /^metric +\| unit +\| certgate +\| +caddy +\| +ratio/m);
    assert.match(table, /ratio = certgate \/ caddy/);
  });

  test('first requests: each new name answered with its own certificate; the CA share recorded', () => {
    for (const kind of ['certgate', 'caddy'] as const) {
      const attempts = results.raw.first[kind].results;
      assert.equal(attempts.length, results.settings.firstCount, kind);
      for (const a of attempts) assert.ok(a.ok && a.rightCertificate, `${kind} ${a.name}: ${JSON.stringify(a)}`);
    }
    both(/^First request, median/);
    both(/^CA share: Pebble newOrder→cert download/);
    both(/^CA share: Pebble answer time per order/);
  });

  test('burst: certgate answers every name, one order each', () => {
    const attempts = results.raw.burst.certgate.results;
    assert.equal(attempts.length, results.settings.burstNames);
    for (const a of attempts) assert.ok(a.ok && a.rightCertificate, `${a.name}: ${JSON.stringify(a)}`);
    assert.equal(row(/^Burst: successes/).certgate, results.settings.burstNames);
    assert.equal(row(/^Burst: orders placed at the CA/).certgate, results.settings.burstNames);
    assert.ok(results.raw.burst.caddy.results.length > 0, 'Caddy took part');
  });

  test('handshakes: the seeded certificates are served at every stored count, cold and warm', () => {
    assert.deepEqual(Object.keys(results.raw.handshakes).map(Number), results.settings.tiers);
    for (const [tier, figures] of Object.entries(results.raw.handshakes)) {
      for (const kind of ['certgate', 'caddy'] as const) {
        const warm = figures.warm[kind];
        assert.ok(warm.handshakes > 0 && warm.errors === 0 && warm.wrong === 0, `${tier} stored, warm, ${kind}: ${JSON.stringify(warm)}`);
        assert.ok(figures.memoryIdle[kind].rssMiB > 0, `${tier} stored, RSS idle, ${kind}`);
        if (Number(tier) > 1) {
          const cold = figures.cold?.[kind];
          assert.ok(cold, `${tier} stored: a cold pass for ${kind}`);
          // Every seeded name was touched once, each with its own certificate.
          assert.equal(cold.touched, Number(tier), `${tier} stored, cold, ${kind}: ${JSON.stringify(cold)}`);
          assert.ok(cold.complete && cold.errors === 0 && cold.wrong === 0, `${tier} stored, cold, ${kind}: ${JSON.stringify(cold)}`);
        }
      }
    }
    both(/^TARGET handshakes\/s/);
    both(/^RSS after cold pass/);
    both(/^Cold start .*stored$/);
  });

  test('CPU: per issued certificate, and per handshake normalised to openssl s_server and to a bare node:https server', () => {
    both(/^Burst: gateway CPU per issued certificate$/);
    // The same at a pace both keep (one new name at a time), and what each costs doing nothing.
    both(/^CPU per issued certificate, one at a time \(paced\), median$/);
    const idle = row(/^Idle CPU \(listening, nothing asked, 3 s\)$/);
    for (const kind of ['certgate', 'caddy'] as const) assert.ok(typeof idle[kind] === 'number' && idle[kind] >= 0, `${idle.metric}: ${kind} = ${idle[kind]}`);
    for (const ref of ['openssl s_server', 'a bare node:https server']) {
      both(new RegExp(`^Gateway CPU per handshake, 1 cert \\(warm\\), normalised to ${ref}$`));
      both(new RegExp(`^Gateway CPU per handshake, .* stored, warm \\(\\d+ names\\), normalised to ${ref}$`));
    }
    // The reference servers took their turns in the same rounds, without errors.
    for (const [tier, figures] of Object.entries(results.raw.handshakes)) {
      for (const key of ['openssl', 'node']) {
        const ref = (figures.warm as Record<string, { handshakes: number; errors: number } | undefined>)[key];
        assert.ok(ref && ref.handshakes > 0 && ref.errors === 0, `${tier} stored, ${key} reference: ${JSON.stringify(ref)}`);
      }
    }
  });

  test('memory (issue 19): the per-name slope, the PSS of the tree against Caddy, the default processes', () => {
    const slope = row(/^\(a\) Memory per extra cached name, .*stored/);
    for (const kind of ['certgate', 'caddy'] as const) assert.ok(Number.isFinite(slope[kind]), `${slope.metric}: ${kind} = ${slope[kind]}`);
    const total = both(/^\(b\) TARGET memory after the cold pass/);
    assert.equal(total.target, '≤ 1.5× Caddy');
    const processes = both(/^\(c\) Processes with the default workers/);
    assert.equal(processes.caddy, 1);
    assert.equal(processes.certgate, availableParallelism() <= 2 ? 1 : availableParallelism() + 1, 'workers: auto is one process on ≤ 2 CPUs, else a primary and one worker per CPU');
  });

  test('proxy: throughput through each gateway and of the upstream alone; the HTTP/2 figure for both, over h2', () => {
    both(/^Keep-alive proxy req\/s \(wrk/);
    both(/^HTTP\/2 proxy req\/s \(h2load/);
    const h2 = results.raw.proxy.h2;
    for (const kind of ['certgate', 'caddy'] as const) {
      assert.ok(h2[kind].runs.length > 0 && h2[kind].runs.every((r) => r.protocol === 'h2' && r.failed === 0), `${kind}: ${JSON.stringify(h2[kind].runs)}`);
    }
    assert.ok(results.raw.proxy.upstream.requestsPerSecond > 0);
  });

  test('proxy: certgate with its access log on, in the same rounds, and on / off', () => {
    assert.ok(row(/^Keep-alive proxy req\/s, certgate with its default access log on \(same rounds\)/).certgate! > 0);
    const share = row(/^Access log on \/ off/);
    assert.ok(share.certgate! > 0 && share.ratio === share.certgate);
  });

  test('flood: random names answered by both (certgate: alerts, nothing else); the real client served its own certificate throughout', () => {
    both(/^Flood: .* handshakes answered\/s/);
    both(/^Flood: a real client's handshake p99/);
    const { certgate, caddy } = results.raw.flood.summary;
    assert.ok(certgate.alerts > 0 && certgate.fullHandshakes === 0 && certgate.errors === 0, JSON.stringify(certgate));
    assert.ok(caddy.alerts + caddy.fullHandshakes > 0, JSON.stringify(caddy));
    for (const s of [certgate, caddy]) assert.ok(s.realHandshakes > 0 && s.realErrors === 0, JSON.stringify(s));
  });

  test('every ratio is certgate / Caddy (of the columns, or of paired rounds)', () => {
    const withBoth = results.rows.filter((r) => typeof r.certgate === 'number' && typeof r.caddy === 'number' && r.caddy !== 0);
    assert.ok(withBoth.length >= 15, `rows with both figures: ${withBoth.length}`);
    for (const r of withBoth) {
      if (r.ratioOf === 'paired-rounds') {
        // A median of per-round certgate ÷ Caddy: positive, and named in the note.
        assert.ok(r.ratio! > 0 && /paired rounds in the ratio column/.test(r.note ?? ''), `${r.metric}: ${r.ratio} (${r.note})`);
        continue;
      }
      assert.ok(Math.abs(r.ratio! - r.certgate! / r.caddy!) < 1e-9, `${r.metric}: ratio ${r.ratio} for ${r.certgate} / ${r.caddy}`);
    }
    assert.ok(withBoth.some((r) => r.ratioOf === 'paired-rounds'), 'the normalised handshake CPU rows compare paired rounds');
  });
});
