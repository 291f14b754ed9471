// `workers: 2` with the admin API: the API runs once per instance (in worker 0), so an explicit
// listen.admin port does not make the other worker fail; a binding made through it reaches the
// other worker's routing at once (registry changes travel over the workers' bus); its /metrics
// add up both workers. Real CLI processes; no CA is needed (nothing is issued).
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { stringify } from 'yaml';
import { adminCall, insecureGet } from '../support/admin.ts';
import { freePort } from '../support/ports.ts';
import { CERTGATE_BIN, runProcess, type RunningProcess } from '../support/process.ts';
import { echoHandler, startUpstream, type FakeUpstream } from '../support/upstream.ts';

const TOKEN = 'workers-admin-token-0123456789';

describe('admin API with workers: 2', () => {
  let dir: string;
  let proc: RunningProcess;
  let platform: FakeUpstream;
  let customer: FakeUpstream;
  let httpsPort: number;
  let adminPort: number;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'certgate-admin-workers-'));
    platform = await startUpstream(echoHandler('platform'));
    customer = await startUpstream(echoHandler('customer'));
    httpsPort = await freePort();
    adminPort = await freePort();
    const file = join(dir, 'certgate.yaml');
    await writeFile(
      file,
      stringify({
        workers: 2,
        listen: { https: `127.0.0.1:${httpsPort}`, http: `127.0.0.1:${await freePort()}`, admin: `127.0.0.1:${adminPort}` },
        storage: { file: { path: join(dir, 'data') } },
        acme: { directory: 'https://127.0.0.1:9/dir' },
        onDemand: { registry: true },
        admin: { token: TOKEN },
        proxy: { upstream: platform.origin, upstreamAllow: ['127.0.0.0/8'] },
        // Names without a certificate are routed here over the fallback certificate (the default
        // `alert` would refuse their handshakes before any request).
        tls: { denied: 'fallback' },
      }),
    );
    proc = runProcess([CERTGATE_BIN, 'run', '--config', file], { env: { CERTGATE_ADMIN_TOKEN: '' } });
    await proc.waitFor(/certgate listening/, 60_000);
  });

  after(async () => {
    await proc?.stop();
    await customer?.close();
    await platform?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('one admin API per instance, and no worker died over its port', async () => {
    assert.equal((await adminCall(adminPort, 'GET', '/healthz')).status, 200);
    assert.equal((await adminCall(adminPort, 'GET', '/readyz')).status, 200);
    const listening = proc.output().split('\n').filter((l) => l.includes('admin API listening'));
    assert.equal(listening.length, 1, proc.output());
    assert.doesNotMatch(proc.output(), /worker died/);
  });

  test('a binding made through worker 0 routes on every worker at once', async () => {
    const name = 'workers.customer.test';
    const upstreamOf = async () => (JSON.parse((await insecureGet(name, httpsPort)).body) as { name: string }).name;
    // Fresh connections spread over both workers; each remembers "not bound".
    for (let i = 0; i < 12; i++) assert.equal(await upstreamOf(), 'platform');
    const put = await adminCall(adminPort, 'PUT', `/v1/domains/${name}`, { token: TOKEN, body: { upstream: customer.origin } });
    assert.equal(put.status, 201, put.body);
    // The change crosses to the other worker through the primary in milliseconds. Allow 10 s on a
    // loaded machine: still far from the 30 s a worker keeps "not bound" without the bus.
    const deadline = Date.now() + 10_000;
    let seen: string[];
    do {
      seen = [];
      for (let i = 0; i < 12; i++) seen.push(await upstreamOf());
    } while (seen.some((s) => s !== 'customer') && Date.now() < deadline);
    assert.deepEqual(seen, Array<string>(12).fill('customer'));
  });

  test('GET /metrics adds up both workers', async () => {
    // Sums of a counter family over its label values, from the Prometheus text.
    const scrape = async (): Promise<(family: string) => number> => {
      const res = await adminCall(adminPort, 'GET', '/metrics', { token: TOKEN });
      assert.equal(res.status, 200, res.body);
      return (family) =>
        res.body
          .split('\n')
          .filter((line) => line.startsWith(`${family}{`) || line.startsWith(`${family} `))
          .reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(' ') + 1)), 0);
    };
    const before = await scrape();
    assert.equal(before('certgate_metrics_workers_reporting'), 2);
    assert.equal(before('certgate_metrics_workers_missing'), 0);
    // Fresh connections: the kernel spreads them over both workers' sockets (SO_REUSEPORT), so
    // one worker's share alone would come out short (all 30 on one worker: 1 chance in 2^29).
    const requests = 30;
    for (let i = 0; i < requests; i++) assert.equal((await insecureGet('sum.customer.test', httpsPort)).status, 200);
    const after = await scrape();
    assert.equal(after('certgate_handshakes_total') - before('certgate_handshakes_total'), requests);
    assert.equal(after('certgate_proxied_requests_total') - before('certgate_proxied_requests_total'), requests);
  });
});
