// Issue 19, item 5 acceptance (`tls.denied`), against a real Pebble with real clients (node:tls
// and openssl s_client): with `alert`, a name policy refuses, an invalid server name and a
// rate-limited name get a fatal unrecognized_name alert (112) and no certificate, no order; a
// client without SNI still gets the fallback; an approved name is issued through tls-alpn-01 and
// served. With `fallback` the same refused name gets the fallback certificate, as before.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { connect } from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { httpsGet, opensslFingerprint, peerCertificate } from '../support/clients.ts';
import { fallbackFingerprint, startTestGateway, type TestGateway } from '../support/gateway.ts';
import { startPebbleOnFreePorts, type PebbleHandle } from '../support/pebble.ts';
import { freePort } from '../support/ports.ts';
import { echoHandler, startUpstream, type FakeUpstream } from '../support/upstream.ts';

/** How a Node TLS client's handshake with this SNI ended: 'connected' or the error's code. */
function nodeHandshake(port: number, servername: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] }, () => {
      socket.destroy();
      resolve('connected');
    });
    socket.setTimeout(30_000, () => socket.destroy(Object.assign(new Error('handshake timeout'), { code: 'TIMEOUT' })));
    socket.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

/** What openssl s_client prints for a handshake with this SNI (stdout and stderr). */
function opensslOutput(port: number, servername: string, version: '-tls1_2' | '-tls1_3'): Promise<string> {
  return new Promise((resolve) => {
    const child = execFile('openssl', ['s_client', version, '-connect', `127.0.0.1:${port}`, '-servername', servername], { timeout: 30_000 }, (_err, stdout, stderr) => resolve(`${stdout}\n${stderr}`));
    child.stdin?.end();
  });
}

describe('tls.denied', () => {
  let pebble: PebbleHandle;
  let upstream: FakeUpstream;
  let ask: Server;
  let askUrl: string;
  let root: string;
  let httpsPort: number;
  let httpPort: number;
  const asked: string[] = [];

  before(async () => {
    ({ pebble, httpsPort, httpPort, root } = await startPebbleOnFreePorts());
    upstream = await startUpstream(echoHandler('app'));
    // Approves ok.* only.
    ask = createServer((req, res) => {
      const domain = new URL(req.url ?? '/', 'http://x').searchParams.get('domain') ?? '';
      asked.push(domain);
      res.writeHead(domain.startsWith('ok.') ? 200 : 403).end();
    });
    await new Promise<void>((resolve) => ask.listen(0, '127.0.0.1', resolve));
    askUrl = `http://127.0.0.1:${(ask.address() as AddressInfo).port}/check`;
  });
  after(async () => {
    ask?.closeAllConnections();
    ask?.close();
    await upstream?.close();
    await pebble?.stop();
  });

  describe('alert', () => {
    let gw: TestGateway;
    before(async () => {
      gw = await startTestGateway({
        pebble,
        httpsPort,
        httpPort,
        config: {
          tls: { denied: 'alert' },
          acme: { challenges: ['tls-alpn-01'] },
          // burst 3: the rate-limited case below runs out of it; the approved name comes first.
          onDemand: { ask: askUrl, limits: { perClient: { rate: 0.001, burst: 3 } } },
          proxy: { upstream: upstream.origin },
        },
      });
    });
    after(() => gw?.close());

    test('an approved name is issued through tls-alpn-01 and served', async () => {
      const res = await httpsGet('ok.denied-alert.test', httpsPort, root);
      assert.equal(res.status, 200);
      assert.equal((JSON.parse(res.body) as { name: string }).name, 'app');
      assert.ok(gw.outcomes.some((o) => o.outcome === 'issued' && o.domain === 'ok.denied-alert.test'));
    });

    test('a name policy refuses: unrecognized_name alert (112) for Node and openssl, TLS 1.3 and 1.2; no order', async () => {
      const ordersBefore = pebble.ordersPlaced();
      assert.equal(await nodeHandshake(httpsPort, 'stranger.denied-alert.test'), 'ERR_SSL_TLSV1_UNRECOGNIZED_NAME');
      for (const version of ['-tls1_3', '-tls1_2'] as const) {
        const out = await opensslOutput(httpsPort, 'stranger.denied-alert.test', version);
        assert.match(out, /alert number 112/, out);
        assert.doesNotMatch(out, /BEGIN CERTIFICATE/, 'no certificate was sent');
      }
      assert.equal(pebble.ordersPlaced(), ordersBefore);
      assert.ok(gw.outcomes.some((o) => o.outcome === 'refused' && o.domain === 'stranger.denied-alert.test'));
      assert.ok(!gw.outcomes.some((o) => o.outcome === 'fallback' && o.domain === 'stranger.denied-alert.test'));
    });

    test('invalid server names get the alert too (no policy call)', async () => {
      assert.equal(await nodeHandshake(httpsPort, 'localhost'), 'ERR_SSL_TLSV1_UNRECOGNIZED_NAME');
      assert.match(await opensslOutput(httpsPort, 'bad_name!.example.com', '-tls1_3'), /alert number 112/);
    });

    test('no SNI: the fallback certificate, as before', async () => {
      assert.equal(await opensslFingerprint(httpsPort, null), await fallbackFingerprint(gw));
    });

    test('over the per-client limit, a name ask would approve gets the alert, without an ask call or an order', async () => {
      // Tokens so far: the approved name and the refused one (remembered since: no more tokens).
      for (let i = 0; i < 3; i++) assert.equal(await nodeHandshake(httpsPort, `drain-${i}.denied-alert.test`), 'ERR_SSL_TLSV1_UNRECOGNIZED_NAME');
      const ordersBefore = pebble.ordersPlaced();
      assert.equal(await nodeHandshake(httpsPort, 'ok.limited.denied-alert.test'), 'ERR_SSL_TLSV1_UNRECOGNIZED_NAME');
      assert.ok(!asked.includes('ok.limited.denied-alert.test'), 'refused by the limits before policy');
      assert.equal(pebble.ordersPlaced(), ordersBefore);
    });

    test('the issued name is still served from memory after the refusals', async () => {
      const res = await httpsGet('ok.denied-alert.test', httpsPort, root);
      assert.equal(res.status, 200);
    });
  });

  describe('fallback', () => {
    let gw: TestGateway;
    let port: number;
    before(async () => {
      port = await freePort();
      gw = await startTestGateway({
        pebble,
        httpsPort: port,
        httpPort: await freePort(),
        config: { tls: { denied: 'fallback' }, onDemand: { ask: askUrl }, proxy: { upstream: upstream.origin } },
      });
    });
    after(() => gw?.close());

    test('a refused or invalid name gets the fallback certificate', async () => {
      const fallback = await fallbackFingerprint(gw);
      assert.equal((await peerCertificate(port, 'stranger.denied-alert.test')).fingerprint256, fallback);
      assert.equal((await peerCertificate(port, 'localhost')).fingerprint256, fallback);
      assert.ok(gw.outcomes.some((o) => o.outcome === 'fallback' && o.domain === 'stranger.denied-alert.test'));
      assert.ok(!gw.outcomes.some((o) => o.outcome === 'refused'));
    });
  });
});
