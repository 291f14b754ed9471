// Host-name upstreams (upstream-pool.ts) through a real ReverseProxy and real upstream servers on
// 127.0.0.2 and 127.0.0.3 (same port), with the DNS answer under the test's control: requests
// spread over every address, a changed answer moves traffic without a request waiting on DNS, a
// failed refresh keeps the last answer, an address that refuses is skipped and idempotent
// bodiless requests retried on another, registry upstreams stay inside proxy.upstreamAllow, and
// {host}/{tenant} templates.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect as netConnect } from 'node:net';
import { describe, it, type TestContext } from 'node:test';
import { parseUpstream, type DynamicRoutes } from '../../src/proxy/proxy.ts';
import { UpstreamAllowList } from '../../src/proxy/upstream-allow.ts';
import { freePort } from '../support/ports.ts';
import { echoHandler, webSocketEcho, type FakeUpstream } from '../support/upstream.ts';
import { captureLogs, proxied, send, upstream, webSocketRoundTrip } from './helpers.ts';

const T = { timeout: 30_000 };

/** Two echo upstreams on the same free port, one on 127.0.0.2 ('two') and one on 127.0.0.3 ('three'). */
async function pair(t: TestContext): Promise<{ port: number; two: FakeUpstream; three: FakeUpstream }> {
  for (let i = 0; ; i++) {
    const port = await freePort();
    try {
      const two = await upstream(t, echoHandler('two'), { host: '127.0.0.2', port, onUpgrade: webSocketEcho('two:') });
      const three = await upstream(t, echoHandler('three'), { host: '127.0.0.3', port });
      return { port, two, three };
    } catch (err) {
      if (i > 5) throw err;
    }
  }
}

/** A resolver whose answer the test sets; counts the lookups. */
function controlledDns(initial: Record<string, string[]>) {
  const answers = new Map(Object.entries(initial));
  const state = { calls: 0, fail: false };
  const resolve = async (hostname: string): Promise<string[]> => {
    state.calls++;
    if (state.fail) throw Object.assign(new Error('SERVFAIL'), { code: 'ESERVFAIL' });
    const a = answers.get(hostname);
    if (!a) throw Object.assign(new Error(`${hostname} not found`), { code: 'ENOTFOUND' });
    return a;
  };
  return { resolve, answers, state };
}

/** Sends GETs (the upstream stays "in use", so it is refreshed) until `done()` or 10 s. */
async function keepUsing(port: number, host: string, done: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!done()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await send(port, { host });
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function nameOf(port: number, host: string, method = 'GET', body?: string): Promise<{ status: number; name?: string; text: string }> {
  const reply = await send(port, { host, method, ...(body !== undefined ? { body, headers: { 'content-length': Buffer.byteLength(body) } } : {}) });
  const text = reply.body.toString();
  return { status: reply.status, text, ...(reply.status === 200 ? { name: (JSON.parse(text) as { name: string }).name } : {}) };
}

describe('host-name upstreams', () => {
  it('spread over every address of the answer, Host kept, one lookup for many requests', T, async (t) => {
    const { port } = await pair(t);
    const dns = controlledDns({ 'app.internal': ['127.0.0.2', '127.0.0.3'] });
    const { front } = await proxied(t, { upstream: `http://app.internal:${port}`, resolve: { interval: 60_000, resolvers: [] }, resolveAddresses: dns.resolve });
    const seen = new Map<string, number>();
    for (let i = 0; i < 20; i++) {
      const r = await send(front.port, { host: 'shop.example.test' });
      assert.equal(r.status, 200);
      const body = JSON.parse(r.body.toString()) as { name: string; headers: Record<string, string> };
      assert.equal(body.headers.host, 'shop.example.test');
      seen.set(body.name, (seen.get(body.name) ?? 0) + 1);
    }
    assert.deepEqual(Object.fromEntries(seen), { two: 10, three: 10 });
    assert.equal(dns.state.calls, 1, 'resolved once, not per request');
  });

  it('a changed answer moves new requests to the new address; a failed refresh keeps the last answer (one log line)', T, async (t) => {
    const { port } = await pair(t);
    const dns = controlledDns({ 'app.internal': ['127.0.0.2'] });
    const logs = captureLogs();
    const { front } = await proxied(t, { upstream: `http://app.internal:${port}`, resolve: { interval: 100, resolvers: [] }, resolveAddresses: dns.resolve, logger: logs.logger });
    assert.equal((await nameOf(front.port, 'a.example.test')).name, 'two');
    dns.answers.set('app.internal', ['127.0.0.3']);
    let last: string | undefined;
    const deadline = Date.now() + 10_000;
    while (last !== 'three') {
      if (Date.now() > deadline) assert.fail('traffic never moved to .3');
      last = (await nameOf(front.port, 'a.example.test')).name;
      await new Promise((r) => setTimeout(r, 20));
    }
    for (let i = 0; i < 5; i++) assert.equal((await nameOf(front.port, 'a.example.test')).name, 'three');
    dns.state.fail = true;
    const calls = dns.state.calls;
    await keepUsing(front.port, 'a.example.test', () => dns.state.calls >= calls + 3, 'three failed refreshes');
    for (let i = 0; i < 5; i++) assert.equal((await nameOf(front.port, 'a.example.test')).name, 'three', 'last good answer kept');
    const warned = logs.lines.filter((l) => l.step === 'upstream-resolve' && l.level === 'warn');
    assert.equal(warned.length, 1, 'logged once while failing');
  });

  it('an address that refuses is skipped: idempotent bodiless requests are retried on another, a POST is not', T, async (t) => {
    const { port, three } = await pair(t);
    await three.close();
    const dns = controlledDns({ 'app.internal': ['127.0.0.3', '127.0.0.2'] });
    const opts = { upstream: `http://app.internal:${port}`, resolve: { interval: 60_000, resolvers: [] }, resolveAddresses: dns.resolve };
    const { front } = await proxied(t, opts);
    for (const method of ['GET', 'HEAD', 'DELETE', 'GET', 'GET']) {
      const r = await send(front.port, { host: 'a.example.test', method });
      assert.equal(r.status, 200, `${method}: retried on .2`);
    }
    const { front: other } = await proxied(t, opts);
    const post = await nameOf(other.port, 'a.example.test', 'POST', 'x=1');
    assert.equal(post.status, 502, 'the first POST went to .3 and is not retried');
    assert.match(post.text, /refused the connection/);
    for (let i = 0; i < 4; i++) assert.equal((await nameOf(other.port, 'a.example.test', 'POST', 'x=1')).name, 'two', '.3 is skipped now');
  });

  it('a WebSocket tunnel connects to an address of the answer', T, async (t) => {
    const { port } = await pair(t);
    const dns = controlledDns({ 'ws.internal': ['127.0.0.2'] });
    const { front } = await proxied(t, { upstream: `http://ws.internal:${port}`, resolve: { interval: 60_000, resolvers: [] }, resolveAddresses: dns.resolve });
    const socket = netConnect(front.port, '127.0.0.1');
    await once(socket, 'connect');
    t.after(() => socket.destroy());
    assert.equal(await webSocketRoundTrip(socket, 'a.example.test', 'hi'), 'two:hi');
  });

  it('a registry upstream re-resolved outside proxy.upstreamAllow gets 502 and no connection', T, async (t) => {
    const { port, three } = await pair(t);
    const dns = controlledDns({ 'app.internal': ['127.0.0.2'] });
    const registry: DynamicRoutes = { lookup: (host) => (host === 'bound.example.test' ? parseUpstream(`http://app.internal:${port}`) : undefined) };
    const { front } = await proxied(t, {
      dynamicRoutes: registry,
      upstreamAllow: new UpstreamAllowList({ allow: ['127.0.0.2/32'] }),
      resolve: { interval: 100, resolvers: [] },
      resolveAddresses: dns.resolve,
    });
    assert.equal((await nameOf(front.port, 'bound.example.test')).name, 'two');
    dns.answers.set('app.internal', ['127.0.0.3']);
    const calls = dns.state.calls;
    await keepUsing(front.port, 'bound.example.test', () => dns.state.calls >= calls + 2, 'a refresh');
    const r = await nameOf(front.port, 'bound.example.test');
    assert.equal(r.status, 502);
    assert.match(r.text, /not an allowed address/);
    assert.equal(three.connections, 0, 'never connected to the refused address');
  });
});

describe('upstream templates', () => {
  it('{tenant} from the binding (in memory or not), {host}; a binding without a tenant gets 502 and a log line', T, async (t) => {
    const { port } = await pair(t);
    const dns = controlledDns({
      'alpha.deployments.internal': ['127.0.0.2'],
      'beta.deployments.internal': ['127.0.0.3'],
      'h.example.net.hosts.internal': ['127.0.0.3'],
    });
    const tenants: Record<string, string> = { 'a.example.test': 'alpha', 'b.example.test': 'Beta', 'bad.example.test': 'not.one-label' };
    const registry: DynamicRoutes = {
      lookup: () => undefined,
      // b.example.test's binding is "not in memory": a promise.
      tenant: (host) => (host === 'b.example.test' ? Promise.resolve(tenants[host]) : tenants[host]),
    };
    const logs = captureLogs();
    const { front } = await proxied(t, {
      routes: [
        { hosts: ['*.example.test'], upstream: `http://{tenant}.deployments.internal:${port}` },
        { hosts: ['h.example.net'], upstream: `http://{host}.hosts.internal:${port}` },
      ],
      dynamicRoutes: registry,
      resolve: { interval: 60_000, resolvers: [] },
      resolveAddresses: dns.resolve,
      logger: logs.logger,
    });
    assert.equal((await nameOf(front.port, 'a.example.test')).name, 'two');
    assert.equal((await nameOf(front.port, 'b.example.test')).name, 'three');
    assert.equal((await nameOf(front.port, 'h.example.net')).name, 'three');
    const none = await nameOf(front.port, 'c.example.test');
    assert.equal(none.status, 502);
    assert.match(none.text, /needs a tenant .*binding for this host has none/);
    const bad = await nameOf(front.port, 'bad.example.test');
    assert.equal(bad.status, 502);
    assert.match(bad.text, /not one DNS label/);
    const lines = logs.lines.filter((l) => l.step === 'upstream-template');
    assert.deepEqual(lines.map((l) => l.host), ['c.example.test', 'bad.example.test']);
  });
});
