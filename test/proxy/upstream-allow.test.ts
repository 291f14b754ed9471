// proxy.upstreamAllow: where registry upstreams may point. Unset: no loopback, link-local (cloud
// metadata) or unspecified addresses; set: only inside the CIDRs; never the admin API. Checked for
// IP literals before connecting and for host names at the connection's own DNS lookup.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect as netConnect } from 'node:net';
import { describe, it, type TestContext } from 'node:test';
import { parseUpstream, type DynamicRoutes, type UpstreamTarget } from '../../src/proxy/proxy.ts';
import { parseCidr } from '../../src/net/cidr.ts';
import { UpstreamAllowList } from '../../src/proxy/upstream-allow.ts';
import { echoHandler, webSocketEcho, type FakeUpstream } from '../support/upstream.ts';
import { captureLogs, handshake, proxied, readAll, send, upstream, webSocketRoundTrip } from './helpers.ts';

const T = { timeout: 15_000 };

/** Registry-like routes: lit.example.test → the upstream by IP, name.example.test → by 'localhost'. */
function registry(up: FakeUpstream): DynamicRoutes {
  const routes = new Map<string, UpstreamTarget>([
    ['lit.example.test', parseUpstream(up.origin)],
    ['name.example.test', parseUpstream(`http://localhost:${up.port}`)],
  ]);
  return { lookup: (host) => routes.get(host) };
}

async function upgradeAnswer(t: TestContext, port: number, host: string): Promise<string> {
  const socket = netConnect({ host: '127.0.0.1', port });
  t.after(() => socket.destroy());
  await once(socket, 'connect');
  const answer = readAll(socket);
  socket.write(handshake(host));
  return answer;
}

describe('proxy.upstreamAllow', () => {
  it('refusal(): the default refuses loopback, link-local, unspecified; a list allows only its CIDRs; the admin API never', () => {
    const byDefault = new UpstreamAllowList();
    for (const address of ['127.0.0.1', '127.9.9.9', '::1', '169.254.169.254', 'fe80::1', '0.0.0.0', '::', '::ffff:127.0.0.1', 'fd00:ec2::254']) {
      assert.match(byDefault.refusal(address, 80) ?? '', /not allowed \(proxy\.upstreamAllow is unset/, address);
    }
    for (const address of ['10.0.0.7', '192.168.1.2', '203.0.113.9', '2001:db8::1', 'fd00::1']) assert.equal(byDefault.refusal(address, 80), undefined, address);

    const listed = new UpstreamAllowList({ allow: ['10.0.0.0/8', '2001:db8::/32', '127.0.0.1'], admin: { host: '127.0.0.1', port: 2019 } });
    assert.equal(listed.refusal('10.200.0.1', 80), undefined);
    assert.equal(listed.refusal('2001:db8:1::5', 443), undefined);
    assert.equal(listed.refusal('127.0.0.1', 8080), undefined);
    assert.equal(listed.refusal('::ffff:10.1.1.1', 80), undefined, 'IPv4-mapped IPv6 is its IPv4 address');
    assert.match(listed.refusal('192.168.1.2', 80) ?? '', /not allowed \(proxy\.upstreamAllow is \[10\.0\.0\.0\/8, /);
    assert.match(listed.refusal('127.0.0.1', 2019) ?? '', /admin API/);
    const anyInterface = new UpstreamAllowList({ allow: ['0.0.0.0/0', '::/0'], admin: { host: '::', port: 2019 } });
    assert.match(anyInterface.refusal('127.0.0.2', 2019) ?? '', /admin API/);
    assert.equal(anyInterface.refusal('203.0.113.9', 2019), undefined, 'another machine on the same port');

    assert.deepEqual(parseCidr('10.0.0.0/8'), { address: '10.0.0.0', prefix: 8, family: 'ipv4' });
    assert.deepEqual(parseCidr('::1'), { address: '::1', prefix: 128, family: 'ipv6' });
    for (const bad of ['10.0.0.0/33', '10.0.0/8', 'example.com/8', '::/129', '10.0.0.0/8/1', '10.0.0.0/', '']) assert.equal(parseCidr(bad), undefined, bad);
  });

  it('by default a registry upstream on loopback gets 502 without its address, by IP or by name, and is never connected to', T, async (t) => {
    const up = await upstream(t, echoHandler('up'), { onUpgrade: webSocketEcho() });
    const logs = captureLogs();
    const { front } = await proxied(t, { upstream: up.origin, dynamicRoutes: registry(up), upstreamAllow: new UpstreamAllowList(), logger: logs.logger });

    for (const host of ['lit.example.test', 'name.example.test']) {
      const reply = await send(front.port, { host });
      assert.equal(reply.status, 502, host);
      assert.equal(reply.body.toString(), '502 Bad Gateway: upstream is not an allowed address\n', host);
      const answer = await upgradeAnswer(t, front.port, host);
      assert.match(answer, /^HTTP\/1\.1 502 Bad Gateway\r\n[\s\S]*\r\n\r\n502 Bad Gateway: upstream is not an allowed address\n$/, host);
    }
    assert.equal(up.connections, 0, 'the refused upstream was never connected to');
    const refused = logs.lines.filter((l) => l.code === 'UPSTREAM_NOT_ALLOWED');
    assert.ok(refused.length >= 2, 'refusals are logged');
    assert.ok(refused.every((l) => l.level === 'warn' && typeof l.upstream === 'string'), 'the log line names the upstream');

    // Configured routes are the operator's own: not checked.
    assert.equal((await send(front.port, { host: 'configured.example.test' })).status, 200);
  });

  it('with loopback in the list, registry upstreams work by IP and by name (plain and WebSocket)', T, async (t) => {
    const up = await upstream(t, echoHandler('up'), { onUpgrade: webSocketEcho() });
    const { front } = await proxied(t, { dynamicRoutes: registry(up), upstreamAllow: new UpstreamAllowList({ allow: ['127.0.0.0/8'] }) });
    for (const host of ['lit.example.test', 'name.example.test']) {
      assert.equal((await send(front.port, { host })).status, 200, host);
      const socket = netConnect({ host: '127.0.0.1', port: front.port });
      t.after(() => socket.destroy());
      await once(socket, 'connect');
      assert.equal(await webSocketRoundTrip(socket, host, 'hi'), 'hi', host);
    }
  });

  it("the gateway's admin port is refused even when its address is in the list", T, async (t) => {
    const up = await upstream(t, echoHandler('up'));
    const allow = new UpstreamAllowList({ allow: ['127.0.0.0/8'], admin: { host: '127.0.0.1', port: up.port } });
    const { front } = await proxied(t, { dynamicRoutes: registry(up), upstreamAllow: allow });
    assert.equal((await send(front.port, { host: 'lit.example.test' })).status, 502);
    assert.equal((await send(front.port, { host: 'name.example.test' })).status, 502);
    assert.equal(up.connections, 0);
  });
});
