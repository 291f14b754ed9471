// proxy.strictHost: 421 Misdirected Request when Host is not a name the certificate served on the
// TLS connection covers, checked with a real TLS client whose SNI and Host differ.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer as createHttpsServer, Agent as HttpsAgent } from 'node:https';
import type { AddressInfo } from 'node:net';
import { before, describe, it, type TestContext } from 'node:test';
import { connect as tlsConnect, createSecureContext } from 'node:tls';

import { echoHandler, webSocketEcho } from '../support/upstream.ts';
import { handshake, newProxy, proxied, type ProxyTestOptions, readAll, selfSignedCert, send, upstream, type TestCert } from './helpers.ts';

const T = { timeout: 15_000 };

/**
 * An https front like the gateway's: the SNI callback serves `site` for names under example.test
 * and `fallback` for anything else (also when there is no SNI).
 */
async function gatewayLikeFront(t: TestContext, opts: ProxyTestOptions, site: TestCert, fallback: TestCert): Promise<number> {
  const proxy = newProxy(opts);
  const siteContext = createSecureContext(site);
  const fallbackContext = createSecureContext(fallback);
  const server = createHttpsServer({
    ...fallback,
    SNICallback: (name, cb) => cb(null, name === 'example.test' || name.endsWith('.example.test') ? siteContext : fallbackContext),
  });
  server.on('request', (req, res) => proxy.handleRequest(req, res));
  server.on('upgrade', (req, socket, head) => proxy.handleUpgrade(req, socket, head));
  server.listen({ host: '127.0.0.1', port: 0 });
  await once(server, 'listening');
  t.after(async () => {
    server.closeAllConnections();
    server.close();
    await proxy.close();
  });
  return (server.address() as AddressInfo).port;
}

describe('proxy.strictHost', () => {
  let site: TestCert;
  let fallback: TestCert;
  before(() => {
    site = selfSignedCert('DNS:example.test,DNS:*.example.test');
    fallback = selfSignedCert('DNS:fallback.invalid');
  });

  it('answers 421 when Host is not covered by the certificate served for the SNI name', T, async (t) => {
    const up = await upstream(t, echoHandler('app'));
    const port = await gatewayLikeFront(t, { upstream: up.origin, strictHost: true, fallbackCert: fallback.cert }, site, fallback);
    const ca = `${site.cert}\n${fallback.cert}`;
    const get = (servername: string, host: string) => send(port, { tls: { ca, servername, anyName: true }, host });

    assert.equal((await get('a.example.test', 'a.example.test')).status, 200);
    assert.equal((await get('a.example.test', 'B.Example.Test.:8443')).status, 200, 'another name the wildcard covers, normalised');
    assert.equal((await get('a.example.test', 'example.test')).status, 200);
    const other = await get('a.example.test', 'other.test');
    assert.equal(other.status, 421);
    assert.match(other.body.toString(), /^421 Misdirected Request: /);
    assert.equal((await get('a.example.test', 'a.b.example.test')).status, 421, '*. covers one label only');
    assert.equal((await get('a.example.test', '')).status, 421, 'no Host');
    // The fallback certificate was served: it covers nothing, not even its own name.
    assert.equal((await get('unknown.test', 'unknown.test')).status, 421);
    assert.equal((await get('unknown.test', 'fallback.invalid')).status, 421);
  });

  it('checks every request of a keep-alive connection, and upgrades too', T, async (t) => {
    const up = await upstream(t, echoHandler('app'), { onUpgrade: webSocketEcho() });
    const port = await gatewayLikeFront(t, { upstream: up.origin, strictHost: true, fallbackCert: fallback.cert }, site, fallback);
    const agent = new HttpsAgent({ keepAlive: true, maxSockets: 1, ca: site.cert, servername: 'a.example.test' });
    t.after(() => agent.destroy());
    const first = await send(port, { host: 'a.example.test', agent, tls: { ca: site.cert, servername: 'a.example.test' } });
    assert.equal(first.status, 200);
    const second = await send(port, { host: 'victim.test', agent, tls: { ca: site.cert, servername: 'a.example.test' } });
    assert.equal(second.status, 421);

    const socket = tlsConnect({ host: '127.0.0.1', port, servername: 'a.example.test', ca: site.cert, ALPNProtocols: ['http/1.1'] });
    t.after(() => socket.destroy());
    await once(socket, 'secureConnect');
    const answer = readAll(socket);
    socket.write(handshake('victim.test'));
    assert.match(await answer, /^HTTP\/1\.1 421 Misdirected Request\r\n/);
    assert.equal(up.upgrades.length, 0);
  });

  it('without strictHost, Host alone routes (as before)', T, async (t) => {
    const up = await upstream(t, echoHandler('app'));
    const port = await gatewayLikeFront(t, { upstream: up.origin }, site, fallback);
    assert.equal((await send(port, { tls: { ca: site.cert, servername: 'a.example.test' }, host: 'other.test' })).status, 200);
  });

  it('plain HTTP connections carry no certificate and are not checked', T, async (t) => {
    const up = await upstream(t, echoHandler('app'));
    const { front } = await proxied(t, { upstream: up.origin, strictHost: true });
    assert.equal((await send(front.port, { host: 'anything.test' })).status, 200);
  });
});
