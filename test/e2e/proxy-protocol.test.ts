// Issue 16 items 1-2 acceptance, with Debian's haproxy in TCP mode in front of the gateway and a
// real Pebble validating through it: haproxy's HTTPS frontends send PROXY v2 (the one Pebble's
// tls-alpn-01 uses) and v1, its HTTP frontend v1 (Pebble's http-01). A client bound to 127.0.0.5
// reaches the upstream as 127.0.0.5 (X-Forwarded-For, X-Real-IP), from the very first request that
// triggers issuance on, and the abuse limits key it as 127.0.0.5 too. The gateway trusts only
// 127.0.0.1/32 (haproxy): a direct connection from 127.0.0.7 with a PROXY header is closed, one
// from 127.0.0.1 without a header is closed, and a hand-written v2 LOCAL keeps the peer address.
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { TLSSocket } from 'node:tls';
import { capturingLogger, type LogLine } from '../support/log-lines.ts';
import { startHaproxy, type HaproxyHandle } from '../support/haproxy.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { startPebbleOnFreePorts, type PebbleHandle } from '../support/pebble.ts';
import { freePort } from '../support/ports.ts';
import { proxyV1, proxyV2, proxyV2Local, tlsWithHeader } from '../support/proxy-header.ts';
import { echoHandler, startUpstream, type FakeUpstream } from '../support/upstream.ts';

interface Env {
  pebble: PebbleHandle;
  root: string;
  upstream: FakeUpstream;
  gw: TestGateway;
  haproxy: HaproxyHandle;
  lines: LogLine[];
  /** haproxy's frontends: HTTPS with v2 (Pebble's tls-alpn-01 port), HTTPS with v1, HTTP with v1 (Pebble's http-01 port). */
  httpsV2: number;
  httpsV1: number;
  httpV1: number;
  /** The gateway's own listeners. */
  gwHttps: number;
  gwHttp: number;
}

interface Echo {
  headers: Record<string, string | undefined>;
}

/** GET https://<name>/ through 127.0.0.1:port from `localAddress`, verifying against `ca`. */
function getFrom(localAddress: string, port: number, name: string, ca: string): Promise<{ status: number; echo: Echo }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', port, localAddress, servername: name, headers: { host: name }, ca, agent: false, timeout: 90_000 }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString('utf8')));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, echo: JSON.parse(body) as Echo }));
    });
    req.on('timeout', () => req.destroy(new Error(`timeout requesting ${name} from ${localAddress}`)));
    req.on('error', reject);
    req.end();
  });
}

/** Plain GET through 127.0.0.1:port from `localAddress`: the status. */
function plainFrom(localAddress: string, port: number, host: string, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, localAddress, path, headers: { host }, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

/** What a TLS connection got for one GET before it closed: the reply, or '' and the error. */
function tlsExchange(socket: TLSSocket, host: string): Promise<{ reply: string; error?: string }> {
  return new Promise((resolve) => {
    let reply = '';
    let error: string | undefined;
    socket.once('secureConnect', () => socket.write(`GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`));
    socket.on('data', (d: Buffer) => (reply += d.toString('utf8')));
    socket.on('error', (err) => (error = err.message));
    socket.on('close', () => resolve({ reply, ...(error ? { error } : {}) }));
  });
}

/** Everything a raw TCP connection got for `bytes` before the gateway closed it. */
function rawExchange(port: number, localAddress: string, bytes: Buffer): Promise<string> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port, localAddress }, () => s.write(bytes));
    let out = '';
    s.on('data', (d: Buffer) => (out += d.toString('latin1')));
    s.on('error', () => {});
    s.on('close', () => resolve(out));
  });
}

describe('PROXY protocol behind haproxy (issue 16 items 1-2)', () => {
  let env: Env;
  before(async () => {
    const { pebble, httpsPort, httpPort, root } = await startPebbleOnFreePorts();
    const upstream = await startUpstream(echoHandler('app'));
    const [gwHttps, gwHttp, httpsV1] = [await freePort(), await freePort(), await freePort()];
    const { logger, lines } = capturingLogger('debug');
    const gw = await startTestGateway({
      pebble,
      httpsPort: gwHttps,
      httpPort: gwHttp,
      logger,
      config: {
        listen: { proxyProtocol: { trusted: ['127.0.0.1/32'] } },
        onDemand: { allow: ['*.customers.test'], limits: { perClient: { rate: 0.001, burst: 1 } } },
        proxy: { upstream: upstream.origin },
      },
    });
    const haproxy = await startHaproxy([
      { listen: httpsPort, backend: gwHttps, proxyProtocol: 'v2' },
      { listen: httpsV1, backend: gwHttps, proxyProtocol: 'v1' },
      { listen: httpPort, backend: gwHttp, proxyProtocol: 'v1' },
    ]);
    env = { pebble, root, upstream, gw, haproxy, lines, httpsV2: httpsPort, httpsV1, httpV1: httpPort, gwHttps, gwHttp };
  });
  after(async () => {
    await env?.haproxy.stop();
    await env?.gw.close();
    await env?.upstream.close();
    await env?.pebble.stop();
  });

  test('through haproxy (v2): the first request issues and the upstream sees 127.0.0.5; the abuse limits key 127.0.0.5', async () => {
    const orders0 = env.pebble.ordersPlaced();
    const first = await getFrom('127.0.0.5', env.httpsV2, 'shop.customers.test', env.root);
    assert.equal(first.status, 200);
    assert.equal(env.pebble.ordersPlaced(), orders0 + 1, 'the first request triggered the issuance');
    assert.equal(first.echo.headers['x-forwarded-for'], '127.0.0.5');
    assert.equal(first.echo.headers['x-real-ip'], '127.0.0.5');
    assert.equal(first.echo.headers['x-forwarded-proto'], 'https');

    // perClient burst 1: 127.0.0.5's second new name is over its bucket, and the line names it.
    const second = await getFrom('127.0.0.5', env.httpsV2, 'other.customers.test', env.root).catch((err: Error) => err);
    assert.ok(second instanceof Error, 'the fallback certificate does not verify for the name');
    const limited = env.lines.filter((l) => l.step === 'rate-limit');
    assert.deepEqual(limited.map((l) => [l.domain, l.scope, l.client]), [['other.customers.test', 'client', '127.0.0.5']]);
    assert.equal(env.pebble.ordersPlaced(), orders0 + 1, 'no order for the limited name');

    const access = env.lines.filter((l) => l.msg === 'access');
    assert.equal(access.at(-1)?.client, '127.0.0.5', 'the access log names the client');
  });

  test('through haproxy with v1 on HTTPS and HTTP: the same address', async () => {
    const viaV1 = await getFrom('127.0.0.5', env.httpsV1, 'shop.customers.test', env.root);
    assert.equal(viaV1.status, 200);
    assert.equal(viaV1.echo.headers['x-forwarded-for'], '127.0.0.5');

    // The HTTP listener: an unknown http-01 token is logged with the client (and redirects work).
    const token = 'x'.repeat(43);
    assert.equal(await plainFrom('127.0.0.5', env.httpV1, 'shop.customers.test', `/.well-known/acme-challenge/${token}`), 404);
    const unknown = env.lines.filter((l) => l.step === 'http-01-validation' && l.found === false);
    assert.equal(unknown.at(-1)?.client, '127.0.0.5');
    assert.equal(await plainFrom('127.0.0.5', env.httpV1, 'shop.customers.test', '/'), 308);
  });

  test('a v2 LOCAL header (a health check) keeps the peer address', async () => {
    const { reply } = await tlsExchange(tlsWithHeader(env.gwHttps, proxyV2Local(), '127.0.0.1', 'shop.customers.test', env.root), 'shop.customers.test');
    assert.match(reply, /^HTTP\/1.1 200/);
    assert.match(reply, /"x-forwarded-for":"127\.0\.0\.1"/);
  });

  test('direct connections: untrusted with a PROXY header, and trusted without one, are closed', async () => {
    const spoof = proxyV2({ source: '203.0.113.9', destination: '127.0.0.1', sourcePort: 1234, destinationPort: 443 });
    const untrusted = await tlsExchange(tlsWithHeader(env.gwHttps, spoof, '127.0.0.7', 'shop.customers.test', env.root), 'shop.customers.test');
    assert.equal(untrusted.reply, '', `closed: ${untrusted.error}`);
    assert.ok(untrusted.error, 'the TLS handshake failed');
    const untrustedHttp = await rawExchange(env.gwHttp, '127.0.0.7', Buffer.concat([proxyV1({ source: '203.0.113.9', destination: '127.0.0.1', sourcePort: 1234, destinationPort: 80 }), Buffer.from('GET / HTTP/1.1\r\nHost: shop.customers.test\r\n\r\n')]));
    assert.match(untrustedHttp, /^HTTP\/1.1 400/);

    const noHeader = await tlsExchange(tlsWithHeader(env.gwHttps, null, '127.0.0.1', 'shop.customers.test', env.root), 'shop.customers.test');
    assert.equal(noHeader.reply, '');
    const noHeaderHttp = await rawExchange(env.gwHttp, '127.0.0.1', Buffer.from('GET / HTTP/1.1\r\nHost: shop.customers.test\r\n\r\n'));
    assert.equal(noHeaderHttp, '');
    assert.ok(env.lines.some((l) => l.step === 'proxy-protocol' && l.listener === 'https'));

    // An untrusted client without a header is plain TLS: served, as itself.
    const direct = await getFrom('127.0.0.7', env.gwHttps, 'shop.customers.test', env.root);
    assert.equal(direct.echo.headers['x-forwarded-for'], '127.0.0.7');
  });
});
