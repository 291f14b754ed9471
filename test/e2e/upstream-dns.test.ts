// Issue 16 item 4 acceptance: upstreams behind DNS, through the real gateway (Pebble-issued
// certificates) with pebble-challtestsrv as the DNS server of `proxy.resolve.resolvers`. Two
// upstream servers on 127.0.0.2 and 127.0.0.3 (same port) behind `app.internal`:
//   - the A record switched from .2 to .3 under a keep-alive GET load: traffic reaches .3 within
//     interval + 2 s, and no request fails
//   - both addresses in the record and the server on one stopped under load: no GET fails
//   - `{tenant}` template: each customer's binding routes to its own deployment's record
import assert from 'node:assert/strict';
import { Agent, request } from 'node:https';
import { after, before, describe, test } from 'node:test';
import { adminCall } from '../support/admin.ts';
import { httpsGet } from '../support/clients.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { startPebbleOnFreePorts, type MockDns, type PebbleHandle } from '../support/pebble.ts';
import { freePort } from '../support/ports.ts';
import { echoHandler, startUpstream, type FakeUpstream } from '../support/upstream.ts';

const TOKEN = 'e2e-admin-token-upstream-dns-0123';
const INTERVAL_MS = 1000;
const HOST = 'app.customers.test';

interface Sample {
  start: number;
  end: number;
  status: number;
  name: string;
  error?: string;
}

/** `clients` keep-alive GET loops against HOST until stop(); every answer is recorded. */
function loadLoop(port: number, ca: string, clients = 4) {
  const agent = new Agent({ keepAlive: true, maxSockets: clients, ca });
  const samples: Sample[] = [];
  let running = true;
  const one = (): Promise<void> =>
    new Promise((resolve) => {
      const start = Date.now();
      const req = request({ host: '127.0.0.1', port, servername: HOST, headers: { host: HOST }, path: '/load', agent, timeout: 30_000 }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const body = Buffer.concat(chunks).toString();
          let name: string;
          try {
            name = (JSON.parse(body) as { name: string }).name;
          } catch {
            name = body.slice(0, 80);
          }
          samples.push({ start, end: Date.now(), status: res.statusCode ?? 0, name });
          resolve();
        });
        res.on('error', (err) => {
          samples.push({ start, end: Date.now(), status: 0, name: '', error: err.message });
          resolve();
        });
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', (err) => {
        samples.push({ start, end: Date.now(), status: 0, name: '', error: err.message });
        resolve();
      });
      req.end();
    });
  const loops = Array.from({ length: clients }, async () => {
    while (running) {
      await one();
      await new Promise((r) => setTimeout(r, 5));
    }
  });
  return {
    samples,
    async stop(): Promise<Sample[]> {
      running = false;
      await Promise.all(loops);
      agent.destroy();
      return samples;
    },
  };
}

async function until(check: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const failed = (samples: Sample[]) => samples.filter((s) => s.status !== 200);

describe('upstreams behind DNS (challtestsrv)', () => {
  let pebble: PebbleHandle;
  let dns: MockDns;
  let gw: TestGateway;
  let root: string;
  let httpsPort: number;
  let port: number;
  let two: FakeUpstream;
  let three: FakeUpstream | undefined;

  /** Sets challtestsrv's answer for names without a record of their own (Pebble's validator uses it). */
  const setDefault = async (ip: string): Promise<void> => {
    const res = await fetch(`${pebble.challtestsrvUrl}/set-default-ipv4`, { method: 'POST', body: JSON.stringify({ ip }) });
    assert.equal(res.status, 200);
  };

  before(async () => {
    ({ pebble, httpsPort, httpPort: port, root, dns } = await startPebbleOnFreePorts());
    const httpPort = port;
    for (let i = 0; ; i++) {
      port = await freePort();
      try {
        two = await startUpstream(echoHandler('two'), { host: '127.0.0.2', port });
        three = await startUpstream(echoHandler('three'), { host: '127.0.0.3', port });
        break;
      } catch (err) {
        await two?.close();
        if (i > 5) throw err;
      }
    }
    await dns.setA('app.internal.', ['127.0.0.2']);
    await dns.setA('acme.deployments.internal.', ['127.0.0.2']);
    await dns.setA('globex.deployments.internal.', ['127.0.0.3']);
    gw = await startTestGateway({
      pebble,
      httpsPort,
      httpPort,
      config: {
        onDemand: { allow: [HOST], registry: true },
        admin: { token: TOKEN },
        proxy: {
          upstream: `http://app.internal:${port}`,
          routes: [{ hosts: ['*.tenants.test'], upstream: `http://{tenant}.deployments.internal:${port}` }],
          resolve: { interval: `${INTERVAL_MS}ms`, resolvers: [pebble.dnsAddress] },
        },
      },
    });
  });

  after(async () => {
    await gw?.close();
    await Promise.all([two?.close(), three?.close()]);
    await pebble?.stop();
  });

  test('the A record switched from .2 to .3 under load: traffic on .3 within interval + 2 s, 0 failed requests', async () => {
    // The first request issues the certificate and resolves app.internal.
    const first = await httpsGet(HOST, httpsPort, root);
    assert.equal(first.status, 200);
    assert.equal(JSON.parse(first.body).name, 'two');
    const load = loadLoop(httpsPort, root);
    await until(() => load.samples.length >= 40, 30_000, 'load on .2');
    // challtestsrv's set-a appends; clearing first would leave a moment with the default answer,
    // so the default is .3 while the record is replaced: every answer is .2 or .3.
    await setDefault('127.0.0.3');
    await dns.setA('app.internal.', ['127.0.0.3']);
    await setDefault('127.0.0.1');
    const switched = Date.now();
    await until(() => load.samples.some((s) => s.name === 'three'), INTERVAL_MS + 10_000, 'traffic on .3');
    const firstOnThree = Math.min(...load.samples.filter((s) => s.name === 'three').map((s) => s.end));
    // Requests that started after that: a moment later, so that none was already on its way to .2.
    await until(() => load.samples.filter((s) => s.start > firstOnThree + 500).length >= 40, 30_000, 'more load');
    const samples = await load.stop();
    assert.deepEqual(failed(samples), [], 'no failed request');
    assert.ok(firstOnThree - switched <= INTERVAL_MS + 2000, `traffic reached .3 ${firstOnThree - switched} ms after the switch`);
    const late = samples.filter((s) => s.start > firstOnThree + 500);
    assert.ok(late.length >= 20);
    assert.deepEqual([...new Set(late.map((s) => s.name))], ['three'], 'new requests go to .3 only');
  });

  test('both addresses in the record, the server on one stopped under load: 0 failed GETs', async () => {
    await dns.setA('app.internal.', ['127.0.0.3', '127.0.0.2']);
    const load = loadLoop(httpsPort, root);
    await until(() => new Set(load.samples.map((s) => s.name)).size === 2, INTERVAL_MS + 10_000, 'traffic on both addresses');
    const before = load.samples.length;
    await three!.close();
    three = undefined;
    const stopped = Date.now();
    await until(() => load.samples.length >= before + 100 && Date.now() - stopped > 2 * INTERVAL_MS, 60_000, 'load after the stop');
    const samples = await load.stop();
    assert.deepEqual(failed(samples), [], 'no failed GET');
    const after = samples.filter((s) => s.start > stopped);
    assert.ok(after.length >= 100);
    assert.deepEqual([...new Set(after.map((s) => s.name))], ['two']);
  });

  test('{tenant} template: each binding reaches its own deployment; a binding without a tenant gets 502', async () => {
    three = await startUpstream(echoHandler('three'), { host: '127.0.0.3', port });
    for (const [name, tenant] of [['acme.tenants.test', 'acme'], ['globex.tenants.test', 'globex'], ['anon.tenants.test', undefined]] as const) {
      const res = await adminCall(gw.gateway.adminPort!, 'PUT', `/v1/domains/${name}`, { token: TOKEN, body: tenant ? { tenant } : {} });
      assert.ok(res.status === 201 || res.status === 200, `bind ${name}: ${res.status}`);
    }
    const acme = await httpsGet('acme.tenants.test', httpsPort, root);
    assert.equal(JSON.parse(acme.body).name, 'two');
    const globex = await httpsGet('globex.tenants.test', httpsPort, root);
    assert.equal(JSON.parse(globex.body).name, 'three');
    assert.equal(JSON.parse(globex.body).headers.host, 'globex.tenants.test');
    const anon = await httpsGet('anon.tenants.test', httpsPort, root);
    assert.equal(anon.status, 502);
    assert.match(anon.body, /needs a tenant/);
  });
});
