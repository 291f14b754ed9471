// Issue 6 acceptance (metrics): the text prom-client renders from the gateway's own Registry
// parses as Prometheus exposition format (strict parser: test/support/prometheus.ts), and the
// counters move as the test acts — handshake outcomes, an issuance against a real Pebble, a
// proxied request, a rate-limited handshake. The admin server (issue 6 part A) serves the same
// render() at GET /metrics.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { register as globalRegistry } from 'prom-client';
import { GatewayMetrics, wireMetrics } from '../../src/admin/metrics.ts';
import { CertificateEvents } from '../../src/issuance/events.ts';
import { CertificateCache } from '../../src/tls/cache.ts';
import { httpsGet, peerCertificate } from '../support/clients.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { startPebbleOnFreePorts, type PebbleHandle } from '../support/pebble.ts';
import { runProcess } from '../support/process.ts';
import { parsePrometheusText, sampleValue, type Family } from '../support/prometheus.ts';
import { echoHandler, startUpstream, type FakeUpstream } from '../support/upstream.ts';

describe('prometheus text parser (the checker itself)', () => {
  test('accepts valid exposition text and rejects what a scraper would reject', () => {
    const ok = '# HELP a_total Things.\n# TYPE a_total counter\na_total{x="1",y="q\\"z"} 3\n# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 4.5\nh_count 2\n';
    const parsed = parsePrometheusText(ok);
    assert.equal(sampleValue(parsed, 'a_total', { y: 'q"z' }), 3);
    for (const bad of [
      'a 1', // no trailing newline
      'a{x="1} 1\n', // unterminated label value
      'a{1x="1"} 1\n', // bad label name
      'a one\n', // bad value
      '# TYPE a counter\na -1\n', // negative counter
      'a{x="1"} 1\nb 1\na{x="2"} 1\n', // family split
      'a 1\na 2\n', // duplicate series
      '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n', // not cumulative
      '# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 1\n', // +Inf != count
    ]) {
      assert.throws(() => parsePrometheusText(bad), Error, JSON.stringify(bad));
    }
  });
});

describe('GatewayMetrics (unit: own registry, hooks, events, scrape-time gauges)', () => {
  test('renders parseable text from its own Registry; hooks and events move the counters', async () => {
    const events = new CertificateEvents();
    const cache = new CertificateCache(10);
    const metrics = new GatewayMetrics();
    const other = new GatewayMetrics(); // a second instance (another gateway in this process) must not clash
    const stop = wireMetrics(metrics, { events, cache, budgets: () => [{ limit: 'issuance-global', remaining: 42 }] });

    const first = parsePrometheusText(await metrics.render());
    assert.equal(metrics.contentType.startsWith('text/plain'), true);
    assert.equal(sampleValue(first, 'certgate_handshakes_total', { outcome: 'cache-hit' }), 0, 'outcomes are present from the start');
    assert.equal(sampleValue(first, 'certgate_rate_limit_budget_remaining', { limit: 'issuance-global' }), 42);
    assert.equal(sampleValue(first, 'certgate_certificates_managed'), 0);
    assert.ok(first.has('certgate_process_resident_memory_bytes'), 'default process metrics, prefixed');
    assert.ok(!(await globalRegistry.metrics()).includes('certgate_'), 'nothing registered in the global registry');

    metrics.handshake('cache-hit');
    metrics.handshake('cache-hit');
    metrics.handshake('fallback');
    metrics.proxied({ status: 204, ms: 12, upstream: 'http://127.0.0.1:1', aborted: false });
    metrics.proxied({ status: 502, ms: 3, upstream: null, aborted: false });
    metrics.rateLimited('client');
    events.emit({ type: 'issuance-started', domain: 'a.test', ca: 'ca-one', reason: 'on-demand' });
    events.emit({ type: 'issuance-succeeded', domain: 'a.test', ca: 'ca-one', notAfter: new Date().toISOString(), ms: 750, challenge: 'http-01' });
    events.emit({ type: 'issuance-failed', domain: 'b.test', ca: 'ca-one', step: 'authorization', error: 'x', renewal: false });
    stop();
    events.emit({ type: 'issuance-started', domain: 'c.test', ca: 'ca-one', reason: 'on-demand' }); // after stop(): not counted

    const m = parsePrometheusText(await metrics.render());
    assert.equal(sampleValue(m, 'certgate_handshakes_total', { outcome: 'cache-hit' }), 2);
    assert.equal(sampleValue(m, 'certgate_handshakes_total', { outcome: 'fallback' }), 1);
    assert.equal(sampleValue(m, 'certgate_proxied_requests_total', { class: '2xx' }), 1);
    assert.equal(sampleValue(m, 'certgate_proxied_requests_total', { class: '5xx' }), 1);
    assert.equal(sampleValue(m, 'certgate_upstream_duration_seconds_count'), 1, 'only requests that had an upstream');
    assert.equal(sampleValue(m, 'certgate_rate_limited_handshakes_total', { scope: 'client' }), 1);
    assert.equal(sampleValue(m, 'certgate_acme_orders_total', { ca: 'ca-one' }), 1);
    assert.equal(sampleValue(m, 'certgate_acme_failures_total', { ca: 'ca-one', step: 'authorization' }), 1);
    assert.equal(sampleValue(m, 'certgate_issuance_duration_seconds_count', { ca: 'ca-one', challenge: 'http-01' }), 1);
    assert.equal(sampleValue(m, 'certgate_issuance_duration_seconds_sum', { ca: 'ca-one', challenge: 'http-01' }), 0.75);
    assert.equal(sampleValue(m, 'certgate_issuance_duration_seconds_bucket', { ca: 'ca-one', challenge: 'http-01', le: '0.5' }), 0);
    assert.equal(sampleValue(m, 'certgate_issuance_duration_seconds_bucket', { ca: 'ca-one', challenge: 'http-01', le: '1' }), 1);

    const untouched = parsePrometheusText(await other.render());
    assert.equal(sampleValue(untouched, 'certgate_handshakes_total', { outcome: 'cache-hit' }), 0);
  });
});

describe('GatewayMetrics before prom-client is loaded', () => {
  test('observations made before start() are counted once it has loaded', async () => {
    const events = new CertificateEvents();
    const metrics = new GatewayMetrics();
    const stop = wireMetrics(metrics, { events, cache: new CertificateCache(10) });
    metrics.handshake('storage');
    metrics.rateLimited('global');
    events.emit({ type: 'issuance-started', domain: 'early.test', ca: 'ca-two', reason: 'on-demand' });
    await metrics.start();
    metrics.handshake('storage');
    const m = parsePrometheusText(await metrics.render());
    assert.equal(sampleValue(m, 'certgate_handshakes_total', { outcome: 'storage' }), 2);
    assert.equal(sampleValue(m, 'certgate_rate_limited_handshakes_total', { scope: 'global' }), 1);
    assert.equal(sampleValue(m, 'certgate_acme_orders_total', { ca: 'ca-two' }), 1);
    stop();
  });

  test('a process that is never scraped keeps nothing and says so when asked', async () => {
    const metrics = new GatewayMetrics({ enabled: false });
    metrics.handshake('cache-hit');
    await assert.rejects(metrics.render(), /not kept in this process/);
  });
});

describe('GatewayMetrics in an idle process', () => {
  test('an idle process is not woken 100 times a second by the event-loop delay sampler', async () => {
    // Its own process: the test runner's timers would wake this one. Voluntary context switches
    // of the main thread count its wake-ups; at prom-client's 10 ms default they were ~150 in 1.5 s.
    const script = [
      "const { GatewayMetrics } = await import('./src/admin/metrics.ts');",
      'await new GatewayMetrics().start();',
      "process.stdout.write('ready\\n');",
      'setTimeout(() => {}, 10_000);',
    ].join('\n');
    const child = runProcess(['--import', 'tsx', '--input-type=module', '-e', script]);
    try {
      await child.waitFor(/ready/, 30_000);
      await sleep(500);
      const pid = child.child.pid!;
      const switches = (): number => Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/task/${pid}/status`, 'utf8'))?.[1]);
      const before = switches();
      await sleep(1500);
      const woken = switches() - before;
      assert.ok(woken < 50, `main thread woken ${woken} times in 1.5 s while idle`);
    } finally {
      await child.stop();
    }
  });
});

describe('metrics of a running gateway (real Pebble, real clients)', () => {
  let pebble: PebbleHandle;
  let upstream: FakeUpstream;
  let gw: TestGateway;
  let httpsPort: number;
  let root: string;

  before(async () => {
    let httpPort: number;
    ({ pebble, httpsPort, httpPort, root } = await startPebbleOnFreePorts());
    upstream = await startUpstream(echoHandler('app'));
    gw = await startTestGateway({
      pebble,
      httpsPort,
      httpPort,
      config: {
        acme: { challenges: ['http-01'], budgets: { newOrders: { limit: 100, window: '3h' } } },
        onDemand: { allow: ['*.metrics.test'], limits: { perClient: { rate: 0.001, burst: 3 }, global: { rate: 1, burst: 50 } } },
        proxy: { upstream: upstream.origin },
      },
    });
  });
  after(async () => {
    await gw?.close();
    await upstream?.close();
    await pebble?.stop();
  });

  const scrape = async (): Promise<Map<string, Family>> => parsePrometheusText(await gw.gateway.metrics.render());
  const value = (m: Map<string, Family>, name: string, labels: Record<string, string> = {}) => sampleValue(m, name, labels) ?? 0;

  test('an issuance, a cache hit, a fallback, a rate-limited handshake and proxied requests move the counters', async () => {
    const ca = gw.gateway.issuer.ca;
    const before = await scrape();

    const first = await httpsGet('shop.metrics.test', httpsPort, root); // issued during the handshake, then proxied
    assert.equal(first.status, 200);
    const second = await httpsGet('shop.metrics.test', httpsPort, root); // from memory
    assert.equal(second.status, 200);
    // Per-client burst 3: each name not in memory or storage takes a token before policy.
    await peerCertificate(httpsPort, 'stranger.example.net'); // token 2; not allowed: fallback
    await peerCertificate(httpsPort, 'two.metrics.test'); // token 3: issued
    await peerCertificate(httpsPort, 'three.metrics.test'); // over the per-client limit: fallback at once

    const after = await scrape();
    const delta = (name: string, labels: Record<string, string> = {}) => value(after, name, labels) - value(before, name, labels);
    assert.equal(delta('certgate_handshakes_total', { outcome: 'issued' }), 2);
    assert.equal(delta('certgate_handshakes_total', { outcome: 'cache-hit' }), 1);
    assert.equal(delta('certgate_handshakes_total', { outcome: 'fallback' }), 2);
    assert.equal(delta('certgate_rate_limited_handshakes_total', { scope: 'client' }), 1);
    assert.equal(delta('certgate_acme_orders_total', { ca }), 2);
    assert.equal(delta('certgate_issuance_duration_seconds_count', { ca, challenge: 'http-01' }), 2);
    assert.ok(value(after, 'certgate_issuance_duration_seconds_sum', { ca, challenge: 'http-01' }) > 0);
    assert.equal(delta('certgate_proxied_requests_total', { class: '2xx' }), 2);
    assert.equal(delta('certgate_upstream_duration_seconds_count'), 2);
    assert.equal(value(after, 'certgate_certificates_managed'), 2);
    assert.equal(value(after, 'certgate_certificates_expiring_7d'), 0, "Pebble's certificates last years");
    assert.equal(value(after, 'certgate_certificate_cache_entries'), 2);
    // Global bucket: 50 at start, 3 taken (shop, stranger, two; 'three' was refused by its
    // client bucket, which takes nothing from the global one), refilled at 1/s meanwhile.
    const budget = sampleValue(after, 'certgate_rate_limit_budget_remaining', { limit: 'issuance-global' });
    assert.ok(budget !== undefined && budget >= 47 && budget <= 50, `global budget ${budget}`);
    // The ACME new-orders budget is read from storage at scrape time: two orders placed.
    assert.equal(delta('certgate_rate_limit_budget_remaining', { limit: `acme-new-orders:${ca}` }), -2);
    assert.equal(value(after, 'certgate_rate_limit_budget_remaining', { limit: `acme-new-orders:${ca}` }), 98);
  });
});
