// listen.proxyProtocol on real node:https and node:http servers (src/net/proxy-protocol-listener.ts)
// and the client address every layer reads (src/net/client-address.ts): from the raw socket, the
// TLSSocket in the SNI callback and the request's socket. Trusted: 127.0.0.1/32; an untrusted
// client binds 127.0.0.7.
import assert from 'node:assert/strict';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { clientAddress } from '../../src/net/client-address.ts';
import { ProxyProtocolAcceptor } from '../../src/net/proxy-protocol-listener.ts';
import { captureLogs, selfSignedCert, type LogCapture } from '../proxy/helpers.ts';
import { proxyV1, proxyV2, proxyV2Local, tlsWithHeader } from '../support/proxy-header.ts';

const T = { timeout: 30_000 };
const CLIENT = { source: '203.0.113.7', destination: '198.51.100.1', sourcePort: 40000, destinationPort: 443 };

interface Env {
  https: HttpsServer;
  http: HttpServer;
  acceptor: ProxyProtocolAcceptor;
  logs: LogCapture;
  /** clientAddress(this) in each SNI callback, in order. */
  sni: Array<string | undefined>;
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, () => resolve((server.address() as AddressInfo).port)));
}

const port = (s: Server) => (s.address() as AddressInfo).port;

/** Sends `request` over `socket` once secure and resolves with everything read until close (or the error). */
function exchange(socket: TLSSocket | Socket, request: string): Promise<string> {
  return new Promise((resolve) => {
    let out = '';
    const send = () => socket.write(request);
    const tls = 'encrypted' in socket;
    if (tls) socket.once('secureConnect', send);
    else if (socket.connecting) socket.once('connect', send);
    else send();
    socket.on('data', (d: Buffer) => (out += d.toString('latin1')));
    socket.on('error', (err) => (out += `\nERROR ${err.message}`));
    socket.on('close', () => resolve(out));
  });
}

const GET = 'GET / HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n';
const bodyOf = (reply: string) => JSON.parse(reply.slice(reply.indexOf('\r\n\r\n') + 4)) as { client: string; peer: string };

describe('PROXY protocol acceptor and clientAddress', () => {
  let env: Env;
  before(async () => {
    const { key, cert } = selfSignedCert();
    const sni: Env['sni'] = [];
    const answer = (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) =>
      res.end(JSON.stringify({ client: clientAddress(req.socket), peer: req.socket.remoteAddress }));
    const https = createHttpsServer(
      {
        key,
        cert,
        SNICallback(this: TLSSocket, _name, cb) {
          sni.push(clientAddress(this));
          cb(null);
        },
      } as import('node:https').ServerOptions,
      answer,
    );
    const http = createHttpServer(answer);
    const logs = captureLogs();
    const acceptor = new ProxyProtocolAcceptor({ trusted: ['127.0.0.1/32'], logger: logs.logger, timeoutMs: 300 });
    acceptor.wire(https, 'https');
    acceptor.wire(http, 'http');
    await listen(https);
    await listen(http);
    env = { https, http, acceptor, logs, sni };
  });
  after(async () => {
    env.acceptor.close();
    for (const s of [env.https, env.http]) {
      s.closeAllConnections();
      await new Promise((r) => s.close(r));
    }
  });

  it('v2 header and ClientHello in one segment: the SNI callback and the request see the PROXY source', T, async () => {
    const before = env.sni.length;
    const reply = await exchange(tlsWithHeader(port(env.https), proxyV2(CLIENT)), GET);
    assert.match(reply, /^HTTP\/1.1 200/);
    assert.deepEqual(bodyOf(reply), { client: '203.0.113.7', peer: '127.0.0.1' });
    assert.deepEqual(env.sni.slice(before), ['203.0.113.7']);
  });

  it('v2 TCP6 header sent alone, TLS after it', T, async () => {
    const raw = connect({ host: '127.0.0.1', port: port(env.https) });
    await new Promise((r) => raw.once('connect', r));
    raw.write(proxyV2({ ...CLIENT, source: '2001:db8::5', destination: '2001:db8::1' }));
    await new Promise((r) => setTimeout(r, 50));
    const reply = await exchange(tlsConnect({ socket: raw, servername: 'example.test', rejectUnauthorized: false }), GET);
    assert.equal(bodyOf(reply).client, '2001:db8::5');
  });

  it('v2 LOCAL (health check) keeps the peer address', T, async () => {
    const reply = await exchange(tlsWithHeader(port(env.https), proxyV2Local()), GET);
    assert.deepEqual(bodyOf(reply), { client: '127.0.0.1', peer: '127.0.0.1' });
  });

  it('plain HTTP with v1: header and request in one write, and apart', T, async () => {
    const v1 = proxyV1({ ...CLIENT, source: '192.0.2.44' });
    const together = connect({ host: '127.0.0.1', port: port(env.http) });
    assert.equal(bodyOf(await exchange(together, v1.toString('latin1') + GET)).client, '192.0.2.44');
    const apart = connect({ host: '127.0.0.1', port: port(env.http) });
    apart.once('connect', () => apart.write(v1));
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(bodyOf(await exchange(apart, GET)).client, '192.0.2.44');
  });

  it('a trusted connection without a header is closed (TLS and HTTP), with a warn line', T, async () => {
    const tls = await exchange(tlsWithHeader(port(env.https), null), GET);
    assert.doesNotMatch(tls, /HTTP\/1.1 200/);
    const http = await exchange(connect({ host: '127.0.0.1', port: port(env.http) }), GET);
    assert.equal(http, '', 'closed without an answer');
    const warned = env.logs.lines.filter((l) => l.step === 'proxy-protocol');
    assert.ok(warned.some((l) => l.listener === 'https' && /without a valid PROXY header/.test(String(l.msg))), JSON.stringify(warned));
    assert.ok(warned.some((l) => l.listener === 'http'));
  });

  it('an untrusted client is plain TLS/HTTP: served with its own address, and its PROXY header is a protocol error', T, async () => {
    const plain = await exchange(tlsWithHeader(port(env.https), null, '127.0.0.7'), GET);
    assert.deepEqual(bodyOf(plain), { client: '127.0.0.7', peer: '127.0.0.7' });
    const spoofed = await exchange(tlsWithHeader(port(env.https), proxyV2(CLIENT), '127.0.0.7'), GET);
    assert.doesNotMatch(spoofed, /HTTP\/1.1 200/);
    const spoofedHttp = await exchange(connect({ host: '127.0.0.1', port: port(env.http), localAddress: '127.0.0.7' }), proxyV1(CLIENT).toString('latin1') + GET);
    assert.match(spoofedHttp, /^HTTP\/1.1 400/);
    assert.doesNotMatch(spoofedHttp, /203\.0\.113\.7/);
  });

  it('a trusted connection that sends nothing is closed after the time-out', T, async () => {
    const idle = connect({ host: '127.0.0.1', port: port(env.https) });
    // No timing bound beyond the test's own time-out: only that it closes by itself.
    assert.equal(await exchange(idle, ''), '');
    assert.ok(env.logs.lines.some((l) => l.step === 'proxy-protocol' && /within 300 ms/.test(String(l.msg))));
  });

  it('close() destroys connections still owing their header', T, async () => {
    const acceptor = new ProxyProtocolAcceptor({ trusted: ['127.0.0.0/8'], logger: env.logs.logger, timeoutMs: 120_000 });
    const server = createHttpServer(() => {});
    acceptor.wire(server, 'http');
    const p = await listen(server);
    const waiting = connect({ host: '127.0.0.1', port: p });
    waiting.on('error', () => {});
    await new Promise((r) => waiting.once('connect', r));
    await new Promise((r) => setTimeout(r, 50));
    const closed = new Promise((r) => waiting.once('close', r));
    acceptor.close();
    await closed;
    await new Promise((r) => server.close(r));
  });
});
