// Issue 6 acceptance (DNS ownership check), against real Pebble and pebble-challtestsrv's DNS,
// which is both what the gateway's check asks and what Pebble's validator asks: a name whose DNS
// points elsewhere gets the fallback certificate and causes no order; once the record is fixed
// in challtestsrv, the next request issues. The target is a host name (the platform's edge),
// which itself resolves to 127.0.0.1 (challtestsrv's default answer).
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { httpsGet, peerCertificate } from '../support/clients.ts';
import { fallbackFingerprint as fallbackOf, startTestGateway, type TestGateway } from '../support/gateway.ts';
import { startPebbleOnFreePorts, type MockDns, type PebbleHandle } from '../support/pebble.ts';
import { echoHandler, startUpstream, type FakeUpstream } from '../support/upstream.ts';

// Both negative caches (the DNS check's and the certificate manager's denied names) are short
// here so "fix the record, next request issues" needs only a short wait.
const NEGATIVE_TTL_MS = 300;

describe('DNS ownership check: DNS pointing elsewhere → no order; fixed → issues', () => {
  let pebble: PebbleHandle;
  let dns: MockDns;
  let gw: TestGateway;
  let upstream: FakeUpstream;
  let httpsPort: number;
  let root: string;
  let fallbackFingerprint: string;
  const edge = `edge-${process.pid}.platform.test`;

  before(async () => {
    let httpPort: number;
    ({ pebble, httpsPort, httpPort, root, dns } = await startPebbleOnFreePorts());
    upstream = await startUpstream(echoHandler('app'));
    gw = await startTestGateway({
      pebble,
      httpsPort,
      httpPort,
      config: {
        onDemand: {
          allow: ['**.customers.test'],
          askDenyCacheTtl: NEGATIVE_TTL_MS,
          dns: { targets: [edge], resolvers: [pebble.dnsAddress], negativeCacheTtl: NEGATIVE_TTL_MS, timeout: '1s' },
        },
        proxy: { upstream: upstream.origin },
      },
    });
    fallbackFingerprint = await fallbackOf(gw);
  });

  after(async () => {
    await gw?.close();
    await upstream?.close();
    await pebble?.stop();
  });

  test('A record elsewhere: fallback, zero orders; record fixed: the next request issues and proxies', async () => {
    const domain = 'moved.customers.test';
    await dns.setA(domain, ['192.0.2.10']);
    const orders = pebble.ordersPlaced();

    for (let i = 0; i < 3; i++) {
      const cert = await peerCertificate(httpsPort, domain);
      assert.equal(cert.fingerprint256, fallbackFingerprint, 'fallback certificate while DNS points elsewhere');
    }
    assert.equal(pebble.ordersPlaced(), orders, 'no ACME order while DNS points elsewhere');

    await dns.setA(domain, ['127.0.0.1']);
    await sleep(NEGATIVE_TTL_MS + 200);
    const res = await httpsGet(domain, httpsPort, root);
    assert.equal(res.status, 200);
    assert.equal(res.body.includes('app'), true);
    assert.notEqual(res.fingerprint256, fallbackFingerprint);
    assert.equal(pebble.ordersPlaced(), orders + 1, 'exactly one order once DNS is right');
  });

  test('CNAME to the platform host name: issues on the first request', async () => {
    const domain = 'www.shop.customers.test';
    await dns.setCname(domain, edge);
    const orders = pebble.ordersPlaced();
    const res = await httpsGet(domain, httpsPort, root);
    assert.equal(res.status, 200);
    assert.equal(pebble.ordersPlaced(), orders + 1);
  });

  test('CNAME to someone else and an AAAA elsewhere: fallback, zero orders', async () => {
    const orders = pebble.ordersPlaced();
    const other = 'blog.customers.test';
    await dns.setCname(other, `proxy-${process.pid}.other-hoster.test`);
    await dns.setA(`proxy-${process.pid}.other-hoster.test`, ['198.51.100.99']);
    assert.equal((await peerCertificate(httpsPort, other)).fingerprint256, fallbackFingerprint);
    const dual = 'dual.customers.test';
    await dns.setAAAA(dual, ['2001:db8::99']); // A stays 127.0.0.1: the CA may still validate over IPv6
    assert.equal((await peerCertificate(httpsPort, dual)).fingerprint256, fallbackFingerprint);
    assert.equal(pebble.ordersPlaced(), orders);
  });
});
