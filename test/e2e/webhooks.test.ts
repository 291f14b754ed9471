// Issue 17 item 3 acceptance: signed webhooks (Standard Webhooks), real Pebble, real redis-server,
// a real receiver that verifies every signature with its own code (test/support/webhook-receiver.ts).
// One gateway: a binding made through the admin API arrives as domain-bound, an issuance against
// Pebble as issuance-succeeded, a receiver answering 500 twice gets the event on the third try
// with the same webhook-id, and an endpoint that refuses connections ends up in
// GET /v1/webhooks/deliveries?status=failed. Two gateways on one Redis: every event, made on
// either, is delivered once (counted by webhook-id after a settle time).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { adminCall } from '../support/admin.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { startPebbleOnFreePorts, type PebbleHandle } from '../support/pebble.ts';
import { freePort } from '../support/ports.ts';
import { startRedis, type RedisHandle } from '../support/redis.ts';
import { startWebhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.ts';
import type { DeliverySummary } from '../../src/webhooks/deliveries.ts';

const TOKEN = 'e2e-admin-token-0123456789';
const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const FAST_RETRIES = { delays: ['200ms', '200ms', '200ms'] };
/** Generous: two 1 s polls, a loaded 2-core machine. */
const ARRIVAL_MS = 30_000;

describe('webhooks: one gateway', () => {
  let pebble: PebbleHandle;
  let gw: TestGateway;
  let receiver: WebhookReceiver;
  let deadUrl: string;
  const call = (method: string, path: string, body?: unknown) => adminCall(gw.gateway.adminPort!, method, path, { token: TOKEN, ...(body === undefined ? {} : { body }) });

  before(async () => {
    let httpsPort: number;
    let httpPort: number;
    ({ pebble, httpsPort, httpPort } = await startPebbleOnFreePorts());
    receiver = await startWebhookReceiver(SECRET);
    // Nobody listens there: every attempt is a connection error.
    deadUrl = `http://127.0.0.1:${await freePort()}/hooks`;
    gw = await startTestGateway({
      pebble,
      httpsPort,
      httpPort,
      config: {
        onDemand: { registry: true },
        admin: { token: TOKEN },
        webhooks: [
          { url: receiver.url, secret: SECRET, retry: FAST_RETRIES },
          { url: deadUrl, secret: SECRET, events: ['domain-bound'], retry: { delays: ['100ms'] } },
        ],
      },
    });
  });

  after(async () => {
    await gw?.close();
    await receiver?.close();
    await pebble?.stop();
  });

  test('bind through the admin API: domain-bound arrives, signed', async () => {
    const put = await call('PUT', '/v1/domains/hooked.customer.test', {});
    assert.equal(put.status, 201, put.body);
    const [got] = await receiver.waitFor((r) => r.some((x) => x.payload.type === 'domain-bound'), ARRIVAL_MS, 'domain-bound');
    const event = receiver.ofType('domain-bound')[0]!;
    assert.ok(got && event.verified, 'signature verifies');
    assert.match(event.id, /^msg_[0-9a-f]{32}$/);
    assert.equal(event.payload.data.domain, 'hooked.customer.test');
    assert.equal(typeof event.payload.timestamp, 'string');
  });

  test('issuance against Pebble: issuance-succeeded arrives with the CA and notAfter', async () => {
    const issued = await call('POST', '/v1/domains/hooked.customer.test/issue');
    assert.equal(issued.status, 200, issued.body);
    await receiver.waitFor((r) => r.some((x) => x.payload.type === 'issuance-succeeded'), ARRIVAL_MS, 'issuance-succeeded');
    const [event] = receiver.ofType('issuance-succeeded');
    assert.ok(event!.verified);
    assert.equal(event!.payload.data.domain, 'hooked.customer.test');
    assert.equal(event!.payload.data.ca, gw.gateway.issuer.ca);
    assert.ok(Date.parse(String(event!.payload.data.notAfter)) > Date.now());
  });

  test('a receiver answering 500 twice gets the event on the third try, with the same webhook-id', async () => {
    receiver.answer = (_id, n, payload) => (payload.type === 'domain-unbound' && n <= 2 ? 500 : 204);
    const del = await call('DELETE', '/v1/domains/hooked.customer.test');
    assert.equal(del.status, 204, del.body);
    await receiver.waitFor((r) => r.filter((x) => x.payload.type === 'domain-unbound').length >= 3, ARRIVAL_MS, 'three domain-unbound attempts');
    const attempts = receiver.ofType('domain-unbound');
    assert.deepEqual(attempts.map((a) => a.status), [500, 500, 204]);
    assert.equal(new Set(attempts.map((a) => a.id)).size, 1, 'one webhook-id');
    assert.ok(attempts.every((a) => a.verified));
    // The unbind also deleted the certificate: that is its own event.
    await receiver.waitFor((r) => r.some((x) => x.payload.type === 'deleted'), ARRIVAL_MS, 'deleted');
    await sleep(1000);
    assert.equal(receiver.ofType('domain-unbound').length, 3, 'nothing sent after the 2xx');
  });

  test('deliveries that did not get through are listed by the admin API', async () => {
    const deadline = Date.now() + ARRIVAL_MS;
    let failed: DeliverySummary[] = [];
    while (Date.now() < deadline) {
      const res = await call('GET', '/v1/webhooks/deliveries?status=failed');
      assert.equal(res.status, 200, res.body);
      failed = (res.json as { items: DeliverySummary[] }).items;
      if (failed.length > 0) break;
      await sleep(200);
    }
    assert.equal(failed.length, 1, JSON.stringify(failed));
    const [item] = failed;
    assert.equal(item!.url, deadUrl);
    assert.equal(item!.type, 'domain-bound');
    assert.equal(item!.attempts, 2);
    assert.match(item!.lastError!.error, /connection failed: ECONNREFUSED/);
    const delivered = (await call('GET', '/v1/webhooks/deliveries?status=delivered')).json as { items: DeliverySummary[] };
    assert.ok(delivered.items.some((d) => d.type === 'domain-unbound' && d.attempts === 3));
    const bad = await call('GET', '/v1/webhooks/deliveries?status=lost');
    assert.equal(bad.status, 400);
    assert.match(bad.body, /status must be one of pending, delivered, failed/);
  });
});

describe('webhooks: two gateways on one Redis', () => {
  let pebble: PebbleHandle;
  let redis: RedisHandle;
  let receiver: WebhookReceiver;
  const gateways: TestGateway[] = [];

  before(async () => {
    let httpsPort: number;
    let httpPort: number;
    ({ pebble, httpsPort, httpPort } = await startPebbleOnFreePorts());
    redis = await startRedis();
    receiver = await startWebhookReceiver(SECRET);
    const config = { onDemand: { registry: true }, admin: { token: TOKEN }, webhooks: [{ url: receiver.url, secret: SECRET, retry: FAST_RETRIES }] };
    const redisOpts = { url: redis.url, prefix: 'cg-hooks:' };
    // A answers Pebble's validations; B only needs ports of its own.
    gateways.push(await startTestGateway({ pebble, httpsPort, httpPort, config, redis: redisOpts }));
    gateways.push(await startTestGateway({ pebble, httpsPort: await freePort(), httpPort: await freePort(), config, redis: redisOpts }));
  });

  after(async () => {
    await Promise.all(gateways.map((g) => g.close()));
    await receiver?.close();
    await redis?.dispose();
    await pebble?.stop();
  });

  test('every event, made on either instance, is delivered once', async () => {
    const [a, b] = gateways as [TestGateway, TestGateway];
    const on = (gw: TestGateway, method: string, path: string) => adminCall(gw.gateway.adminPort!, method, path, { token: TOKEN, ...(method === 'PUT' ? { body: {} } : {}) });
    for (let i = 0; i < 4; i++) {
      assert.equal((await on(a, 'PUT', `/v1/domains/a${i}.cluster.test`)).status, 201);
      assert.equal((await on(b, 'PUT', `/v1/domains/b${i}.cluster.test`)).status, 201);
    }
    assert.equal((await on(b, 'DELETE', '/v1/domains/a0.cluster.test')).status, 204);
    const issued = await on(a, 'POST', '/v1/domains/a1.cluster.test/issue');
    assert.equal(issued.status, 200, issued.body);
    // 8 bound, 1 unbound and its deleted (the manager reports the deletion even when the name had
    // no certificate yet), 1 issued.
    const expected = 11;
    await receiver.waitFor((r) => new Set(r.map((x) => x.id)).size >= expected, ARRIVAL_MS, `${expected} events`);
    await sleep(3000); // settle: both instances poll every second; a duplicate would arrive now
    const ids = receiver.received.map((r) => r.id);
    assert.ok(receiver.received.every((r) => r.verified), 'every signature verifies');
    assert.equal(new Set(ids).size, expected, JSON.stringify(receiver.received.map((r) => [r.payload.type, r.payload.data.domain])));
    assert.equal(ids.length, expected, 'each webhook-id delivered once');
    const types = receiver.received.map((r) => r.payload.type).sort();
    assert.deepEqual(types, [...Array(8).fill('domain-bound'), 'domain-unbound', 'deleted', 'issuance-succeeded'].sort());
  });
});
