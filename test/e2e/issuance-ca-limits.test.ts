// Issue 5 (part B) with the fault-injecting ACME proxy in front of real Pebble:
// - the first issuer answers 503 + Retry-After to new orders: the second issuer issues, the
//   first CA is paused for every name (no further orders to it), meta.json records the issuer;
// - a 429 + Retry-After on new-order with a single issuer: fallback, no order for other names
//   until the pause ends;
// - staging retry: after a production failure the next attempt validates against staging
//   first and goes back to production once staging succeeds.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { caIdFromDirectory, keys } from '../../src/storage/keys.ts';
import { startAcmeProxy, type AcmeFaultProxy } from '../support/acme-proxy.ts';
import { peerCertificate } from '../support/clients.ts';
import { fallbackFingerprint as fallbackOf, startTestGateway } from '../support/gateway.ts';
import { capturingLogger } from '../support/log-lines.ts';
import { startPebbleOnFreePorts, type MockDns, type PebbleHandle } from '../support/pebble.ts';

describe('issuance against a CA that limits us', () => {
  let pebble: PebbleHandle;
  let dns: MockDns;
  let httpsPort: number;
  let httpPort: number;

  before(async () => {
    ({ pebble, dns, httpsPort, httpPort } = await startPebbleOnFreePorts());
  });
  // Each test starts (and closes) its own proxy, so faults and counters start clean.
  after(async () => {
    await pebble?.stop();
  });

  test('first issuer answers 503 with Retry-After: the second issues and the first is paused for every name', async () => {
    const proxy: AcmeFaultProxy = await startAcmeProxy(pebble);
    proxy.failAlways('newOrder', { status: 503, retryAfterSeconds: 3600, detail: 'down for maintenance' });
    const gw = await startTestGateway({
      pebble,
      httpsPort,
      httpPort,
      config: { onDemand: { allow: ['*.limits.test'] }, acme: { directory: undefined, issuers: [{ directory: proxy.directoryUrl }, { directory: pebble.directoryUrl }] } },
    });
    try {
      const fallback = await fallbackOf(gw);
      for (const name of ['a.limits.test', 'b.limits.test', 'c.limits.test']) assert.notEqual((await peerCertificate(httpsPort, name)).fingerprint256, fallback);
      assert.equal(proxy.newOrders().length, 1, 'after the 503 no new order goes to the paused CA');
      const meta = JSON.parse(await readFile(join(gw.dataDir, keys.certificateMeta(caIdFromDirectory(pebble.directoryUrl), 'a.limits.test')), 'utf8')) as { directory: string };
      assert.equal(meta.directory, pebble.directoryUrl);
    } finally {
      await gw.close();
      await proxy.close();
    }
  });

  test('429 with Retry-After on new-order, one issuer: fallback, and no orders for other names until it ends', async () => {
    const proxy: AcmeFaultProxy = await startAcmeProxy(pebble);
    proxy.failNext('newOrder', 1, { status: 429, retryAfterSeconds: 3600, detail: 'too many new orders recently' });
    const { logger, lines } = capturingLogger();
    const gw = await startTestGateway({
      pebble,
      httpsPort,
      httpPort,
      logger,
      config: { onDemand: { allow: ['*.limits.test'] }, acme: { directory: proxy.directoryUrl } },
    });
    try {
      const fallback = await fallbackOf(gw);
      for (const name of ['d.limits.test', 'e.limits.test', 'f.limits.test']) assert.equal((await peerCertificate(httpsPort, name)).fingerprint256, fallback);
      assert.equal(proxy.newOrders().length, 1, 'one order, the one that got the 429');
      const pause = lines.find((l) => l.step === 'ca-pause' && typeof l.until === 'string');
      assert.ok(pause, 'the pause is logged');
      assert.ok(Date.parse(String(pause.until)) > Date.now() + 3_000_000, 'paused for the Retry-After');
    } finally {
      await gw.close();
      await proxy.close();
    }
  });

  test('after a production failure, staging validates first; production is used again once staging succeeds', async () => {
    // Production: the proxy (its own CA id); staging: Pebble directly.
    const proxy: AcmeFaultProxy = await startAcmeProxy(pebble);
    const gw = await startTestGateway({
      pebble,
      httpsPort,
      httpPort,
      config: {
        onDemand: { allow: ['*.limits.test'] },
        acme: { directory: undefined, challenges: ['http-01'], retry: { delays: ['1s'], then: '1s' }, issuers: [{ directory: proxy.directoryUrl, staging: pebble.directoryUrl }] },
      },
    });
    try {
      const fallback = await fallbackOf(gw);
      const name = 'staged.limits.test';
      await dns.setA(name, ['127.0.0.2']);
      assert.equal((await peerCertificate(httpsPort, name)).fingerprint256, fallback);
      assert.equal(proxy.newOrders().length, 1, 'the failed production order');
      await dns.clearA(name);
      const pebbleOrders = pebble.ordersPlaced();
      const deadline = Date.now() + 60_000;
      let fp = fallback;
      while (fp === fallback && Date.now() < deadline) {
        await sleep(250);
        fp = (await peerCertificate(httpsPort, name)).fingerprint256;
      }
      assert.notEqual(fp, fallback, 'certificate obtained after the backoff');
      assert.equal(proxy.newOrders().length, 2, 'production ordered again only once');
      assert.equal(pebble.ordersPlaced() - pebbleOrders, 2, 'one staging order plus the production order (through the proxy)');
      const meta = JSON.parse(await readFile(join(gw.dataDir, keys.certificateMeta(caIdFromDirectory(proxy.directoryUrl), name)), 'utf8')) as { directory: string };
      assert.equal(meta.directory, proxy.directoryUrl, 'the production certificate is the one stored');
    } finally {
      await gw.close();
      await proxy.close();
    }
  });
});
