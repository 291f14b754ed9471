// Issue 2 acceptance: names policy does not approve, and SNI that is not a valid DNS name, get
// the fallback certificate and cause zero ACME orders; an `ask` endpoint that says 403, times
// out or is down denies. Clients are openssl s_client (it sends any SNI, or none) and Node.
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { httpsGet, opensslFingerprint, peerCertificate } from '../support/clients.ts';
import { fallbackFingerprint as fallbackOf, startTestGateway, type TestGateway } from '../support/gateway.ts';
import { echoHandler, startUpstream, type FakeUpstream } from '../support/upstream.ts';
import { startPebbleOnFreePorts, type PebbleHandle } from '../support/pebble.ts';
import { freePort } from '../support/ports.ts';

describe('policy: denied and invalid names never reach the CA', () => {
  let pebble: PebbleHandle;
  let gw: TestGateway;
  let ask: Server;
  let upstream: FakeUpstream;
  let fallbackFingerprint: string;
  let httpsPort: number;
  let root: string;
  const asked: string[] = [];

  before(async () => {
    let httpPort: number;
    ({ pebble, httpsPort, httpPort, root } = await startPebbleOnFreePorts());
    upstream = await startUpstream(echoHandler('app'));
    // The platform's ask endpoint: allows ask-ok.*, says 403 to ask-no.*, never answers ask-hang.*
    ask = createServer((req, res) => {
      const domain = new URL(req.url ?? '/', 'http://x').searchParams.get('domain') ?? '';
      asked.push(domain);
      if (domain.startsWith('ask-ok.')) res.writeHead(200).end('ok');
      else if (domain.startsWith('ask-redirect.')) res.writeHead(302, { location: '/ok' }).end();
      else if (domain.startsWith('ask-hang.')) return; // never answers
      else res.writeHead(403).end('no');
    });
    await new Promise<void>((resolve) => ask.listen(0, '127.0.0.1', resolve));
    gw = await startTestGateway({
      pebble,
      httpsPort,
      httpPort,
      config: {
        onDemand: { allow: ['allowed.example.com'], ask: `http://127.0.0.1:${(ask.address() as AddressInfo).port}/check`, askTimeout: '500ms' },
        proxy: { upstream: upstream.origin },
      },
    });
    fallbackFingerprint = await fallbackOf(gw);
  });

  after(async () => {
    await gw?.close();
    ask?.closeAllConnections();
    ask?.close();
    await upstream?.close();
    await pebble?.stop();
  });

  const cases: Array<[string, string | null]> = [
    ['a name not in allow and denied by ask (403)', 'stranger.example.net'],
    ['an IPv4 literal', '127.0.0.1'],
    ['an IPv6 literal', '::1'],
    ['a name with bad characters', 'bad_name!.example.com'],
    ['a name with a space', 'two words.example.com'],
    ['a single-label name', 'localhost'],
    // 254 characters: over the DNS limit, under what openssl will send.
    ['a name over 253 characters', `${'a'.repeat(63)}.`.repeat(3) + `${'a'.repeat(58)}.com`],
    ['no SNI at all', null],
    ['ask answers a redirect (not followed, denied)', 'ask-redirect.example.net'],
    ['ask times out', 'ask-hang.example.net'],
  ];

  for (const [what, sni] of cases) {
    test(`${what}: fallback certificate, zero orders`, async () => {
      const orders = pebble.ordersPlaced();
      assert.equal(await opensslFingerprint(httpsPort, sni), fallbackFingerprint);
      assert.equal(pebble.ordersPlaced(), orders, 'no ACME order');
    });
  }

  test('invalid names are rejected before any policy call', () => {
    for (const bad of ['127.0.0.1', 'bad_name!.example.com', 'localhost']) assert.ok(!asked.includes(bad), `ask was called for ${bad}`);
    assert.ok(asked.includes('stranger.example.net'), 'ask is called for valid unknown names');
  });

  test('ask endpoint down: denied, zero orders', async () => {
    const downPort = await freePort();
    const down = await startTestGateway({
      pebble,
      httpsPort: await freePort(),
      httpPort: await freePort(),
      config: { onDemand: { ask: `http://127.0.0.1:${downPort}/check` } },
    });
    try {
      const orders = pebble.ordersPlaced();
      const cert = await peerCertificate(down.gateway.httpsPort, 'ask-ok.example.net');
      assert.equal(cert.fingerprint256, await fallbackOf(down));
      assert.equal(pebble.ordersPlaced(), orders);
    } finally {
      await down.close();
    }
  });

  test('ask 2xx approves: a certificate is issued', async () => {
    const orders = pebble.ordersPlaced();
    const res = await httpsGet('ask-ok.example.net', httpsPort, root);
    assert.equal(res.status, 200);
    assert.notEqual(res.fingerprint256, fallbackFingerprint);
    assert.equal(pebble.ordersPlaced(), orders + 1);
  });

  test('repeated handshakes for a denied name ask once (decision cached)', async () => {
    const before = asked.filter((d) => d === 'cached-deny.example.net').length;
    for (let i = 0; i < 5; i++) assert.equal(await opensslFingerprint(httpsPort, 'cached-deny.example.net'), fallbackFingerprint);
    assert.equal(asked.filter((d) => d === 'cached-deny.example.net').length - before, 1);
  });
});
