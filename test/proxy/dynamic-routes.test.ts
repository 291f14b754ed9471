// ReverseProxy with run-time routes (the domain registry's DynamicRoutes): a dynamic match wins
// over configured routes, "no opinion" falls back to them, an answer that needs a storage read
// (a promise) still forwards the whole request body, and WebSocket upgrades follow it too.
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { silentLogger } from '../../src/util/log.ts';
import { parseUpstream, ReverseProxy, type UpstreamTarget } from '../../src/proxy/proxy.ts';
import { echoHandler, startUpstream, type FakeUpstream } from '../support/upstream.ts';
import { send, startFront } from './helpers.ts';

async function upstream(t: TestContext, name: string): Promise<FakeUpstream> {
  const u = await startUpstream(echoHandler(name));
  t.after(() => u.close());
  return u;
}

describe('dynamic routes', () => {
  it('dynamic wins over configured routes; undefined falls back; slow (promise) answers keep the body', { timeout: 15_000 }, async (t) => {
    const configured = await upstream(t, 'configured');
    const fallback = await upstream(t, 'default');
    const dynamic = await upstream(t, 'dynamic');
    const table = new Map<string, UpstreamTarget>([
      ['fast.example.com', parseUpstream(dynamic.origin)],
      ['slow.example.com', parseUpstream(dynamic.origin)],
    ]);
    const proxy = new ReverseProxy(
      { accessLog: false, upstream: fallback.origin, routes: [{ hosts: ['fast.example.com', 'plain.example.com'], upstream: configured.origin }] },
      {
      logger: silentLogger(),
      dynamicRoutes: {
        lookup(host) {
          if (host.startsWith('slow.')) return sleep(50).then(() => table.get(host));
          return table.get(host);
        },
      },
      },
    );
    const front = await startFront(proxy);
    t.after(async () => {
      await front.close();
      await proxy.close();
    });
    const nameOf = (body: Buffer) => (JSON.parse(body.toString()) as { name: string; bodyLength: number });

    assert.equal(nameOf((await send(front.port, { host: 'fast.example.com' })).body).name, 'dynamic', 'dynamic wins over a configured exact route');
    assert.equal(nameOf((await send(front.port, { host: 'plain.example.com' })).body).name, 'configured');
    assert.equal(nameOf((await send(front.port, { host: 'other.example.com' })).body).name, 'default');
    const body = 'x'.repeat(200_000);
    const slow = nameOf((await send(front.port, { host: 'slow.example.com:8443', method: 'POST', body })).body);
    assert.deepEqual(slow.name, 'dynamic');
    assert.equal(slow.bodyLength, body.length, 'the body waited for the route and arrived whole');

    table.delete('fast.example.com');
    assert.equal(nameOf((await send(front.port, { host: 'fast.example.com' })).body).name, 'configured', 'takes effect at the next request');
    assert.equal(proxy.resolveUpstream('plain.example.com'), configured.origin);
  });
});
