// Issue 6 acceptance (admin API, one instance, real Pebble): a domain bound through the API is
// issued at its first HTTPS request and routed to its own upstream; an unbound name gets the
// fallback with zero orders; pre-issue puts the certificate in storage before the first visit,
// which is then a memory hit; certificate status, renew and delete-with-revoke; the event
// stream shows issuance as it happens; unbind stops serving and routing the name.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { keys } from '../../src/storage/keys.ts';
import { adminCall, insecureGet, openEvents, type SseClient } from '../support/admin.ts';
import { httpsGet, opensslFingerprint } from '../support/clients.ts';
import { fallbackFingerprint, startTestGateway, type TestGateway } from '../support/gateway.ts';
import { startPebbleOnFreePorts, type PebbleHandle } from '../support/pebble.ts';
import { echoHandler, startUpstream, type FakeUpstream } from '../support/upstream.ts';

const TOKEN = 'e2e-admin-token-0123456789';

describe('admin API end to end: bind, issue, route, pre-issue, events, unbind', () => {
  let pebble: PebbleHandle;
  let gw: TestGateway;
  let platform: FakeUpstream;
  let customer: FakeUpstream;
  let events: SseClient;
  let fallback: string;
  let root: string;
  let httpsPort: number;
  let admin: number;
  const call = (method: string, path: string, body?: unknown) => adminCall(admin, method, path, { token: TOKEN, ...(body === undefined ? {} : { body }) });
  const upstreamOf = async (name: string) => (JSON.parse((await insecureGet(name, httpsPort)).body) as { name: string }).name;

  before(async () => {
    let httpPort: number;
    ({ pebble, httpsPort, httpPort, root } = await startPebbleOnFreePorts());
    platform = await startUpstream(echoHandler('platform'));
    customer = await startUpstream(echoHandler('customer'));
    gw = await startTestGateway({
      pebble,
      httpsPort,
      httpPort,
      // The customers' upstreams run on loopback, which registry upstreams may not use by default.
      config: { onDemand: { registry: true }, admin: { token: TOKEN }, proxy: { upstream: platform.origin, upstreamAllow: ['127.0.0.0/8'] } },
    });
    admin = gw.gateway.adminPort!;
    fallback = await fallbackFingerprint(gw);
    events = await openEvents(admin, TOKEN);
  });

  after(async () => {
    events?.close();
    await gw?.close();
    await customer?.close();
    await platform?.close();
    await pebble?.stop();
  });

  test('bound via the API: the first HTTPS request issues and reaches the binding’s upstream', async () => {
    const name = 'bound.customer.test';
    const put = await call('PUT', `/v1/domains/${name}`, { upstream: customer.origin, tenant: 'alice' });
    assert.equal(put.status, 201, put.body);
    const orders = pebble.ordersPlaced();
    const res = await httpsGet(name, httpsPort, root);
    assert.equal(res.status, 200);
    assert.equal(res.headers['x-upstream'], 'customer');
    assert.notEqual(res.fingerprint256, fallback);
    assert.equal(pebble.ordersPlaced(), orders + 1);
    assert.equal(gw.outcomes.find((o) => o.domain === name)?.outcome, 'issued');
    // Events streamed as it happened.
    const started = await events.waitFor((e) => e.event === 'issuance-started' && e.data.domain === name, 5000);
    assert.equal(started.data.reason, 'on-demand');
    await events.waitFor((e) => e.event === 'issuance-succeeded' && e.data.domain === name, 5000);
    await events.waitFor((e) => e.event === 'domain-bound' && e.data.name === name, 5000);
    // Another host still goes to the platform's default upstream.
    assert.equal((await httpsGet(name, httpsPort, root)).headers['x-upstream'], 'customer');
  });

  test('unbound name: fallback certificate, zero orders', async () => {
    const orders = pebble.ordersPlaced();
    assert.equal(await opensslFingerprint(httpsPort, 'unbound.customer.test'), fallback);
    assert.equal(pebble.ordersPlaced(), orders);
  });

  test('disabled binding: fallback certificate, zero orders', async () => {
    assert.equal((await call('PUT', '/v1/domains/disabled.customer.test', { status: 'disabled' })).status, 201);
    const orders = pebble.ordersPlaced();
    assert.equal(await opensslFingerprint(httpsPort, 'disabled.customer.test'), fallback);
    assert.equal((await call('POST', '/v1/domains/disabled.customer.test/issue')).status, 409);
    assert.equal(pebble.ordersPlaced(), orders);
  });

  test('a name denied before it was bound is issued right after binding (no stale denial)', async () => {
    const name = 'late.customer.test';
    assert.equal(await opensslFingerprint(httpsPort, name), fallback);
    assert.equal((await call('PUT', `/v1/domains/${name}`, {})).status, 201);
    const res = await httpsGet(name, httpsPort, root);
    assert.equal(res.status, 200);
    assert.equal(res.headers['x-upstream'], 'platform', 'no upstream in the binding: the default route');
  });

  test('pre-issue: the certificate is in storage before the first visit, which is a memory hit', async () => {
    const name = 'preissued.customer.test';
    assert.equal((await call('PUT', `/v1/domains/${name}`, { upstream: customer.origin })).status, 201);
    const issued = await call('POST', `/v1/domains/${name}/issue`);
    assert.equal(issued.status, 200, issued.body);
    assert.equal((issued.json as { source: string }).source, 'issued');
    const stored = await gw.storage.get(keys.certificate(gw.gateway.issuer.ca, name));
    assert.ok(stored, 'certificate in storage before any visit');
    assert.equal(gw.outcomes.filter((o) => o.domain === name).length, 0, 'no handshake yet');

    const orders = pebble.ordersPlaced();
    const res = await httpsGet(name, httpsPort, root);
    assert.equal(res.status, 200);
    assert.equal(res.fingerprint256, new X509Certificate(stored).fingerprint256);
    assert.deepEqual(gw.outcomes.filter((o) => o.domain === name).map((o) => o.outcome), ['cache-hit']);
    assert.equal(pebble.ordersPlaced(), orders, 'the visit placed no order');
  });

  test('certificate status, renew, delete with revocation', async () => {
    const name = 'preissued.customer.test';
    const status = await call('GET', `/v1/certificates/${name}`);
    assert.equal(status.status, 200, status.body);
    const s = status.json as { issuer: string; names: string[]; notBefore: string; notAfter: string; nextRenewal: string; attempts: number; lastError: unknown; nextRetryAt: unknown; givenUp: boolean; cached: boolean; fingerprint256: string };
    assert.deepEqual(s.names, [name]);
    assert.match(s.issuer, /Pebble/);
    assert.ok(Date.parse(s.nextRenewal) > Date.parse(s.notBefore) && Date.parse(s.nextRenewal) < Date.parse(s.notAfter));
    assert.equal(s.attempts, 0);
    assert.equal(s.lastError, null);
    assert.equal(s.nextRetryAt, null);
    assert.equal(s.givenUp, false);
    assert.equal(s.cached, true);

    const renewed = await call('POST', `/v1/certificates/${name}/renew`);
    assert.equal(renewed.status, 200, renewed.body);
    assert.notEqual((renewed.json as { fingerprint256: string }).fingerprint256, s.fingerprint256);
    await events.waitFor((e) => e.event === 'renewed' && e.data.domain === name, 5000);
    assert.equal((await httpsGet(name, httpsPort, root)).fingerprint256, (renewed.json as { fingerprint256: string }).fingerprint256);

    const deleted = await call('DELETE', `/v1/certificates/${name}?revoke=true`);
    assert.equal(deleted.status, 204, deleted.body);
    assert.equal(await gw.storage.get(keys.certificate(gw.gateway.issuer.ca, name)), null);
    assert.equal((await call('GET', `/v1/certificates/${name}`)).status, 404);
    await events.waitFor((e) => e.event === 'deleted' && e.data.domain === name && e.data.reason === 'admin-revoked', 5000);
  });

  test('failed pre-issue: 502, and the certificate status shows the attempts and the last error', async () => {
    const name = 'broken.customer.test';
    // challtestsrv answers 127.0.0.2 for this name, where nothing listens: validation fails.
    const added = await fetch(`${pebble.challtestsrvUrl}/add-a`, { method: 'POST', body: JSON.stringify({ host: `${name}.`, addresses: ['127.0.0.2'] }) });
    assert.equal(added.status, 200);
    assert.equal((await call('PUT', `/v1/domains/${name}`, {})).status, 201);
    const issued = await call('POST', `/v1/domains/${name}/issue`);
    assert.equal(issued.status, 502, issued.body);
    const failed = await events.waitFor((e) => e.event === 'issuance-failed' && e.data.domain === name, 5000);
    const status = await call('GET', `/v1/certificates/${name}`);
    assert.equal(status.status, 404);
    const body = status.json as { attempts: number; lastError: { at: string; step: string; error: string }; nextRetryAt: string; givenUp: boolean };
    assert.equal(body.attempts, 1);
    assert.equal(body.lastError.step, failed.data.step);
    assert.equal(body.lastError.error, failed.data.error);
    // The default schedule: the first retry a minute after the failure.
    assert.equal(Date.parse(body.nextRetryAt) - Date.parse(body.lastError.at), 60_000);
    assert.equal(body.givenUp, false);
  });

  test('routes change without restart: re-binding to another upstream takes effect at the next request', async () => {
    const name = 'bound.customer.test';
    assert.equal(await upstreamOf(name), 'customer');
    assert.equal((await call('PUT', `/v1/domains/${name}`, { upstream: platform.origin })).status, 200);
    assert.equal(await upstreamOf(name), 'platform');
    assert.equal((await call('PUT', `/v1/domains/${name}`, { upstream: customer.origin })).status, 200);
    assert.equal(await upstreamOf(name), 'customer');
  });

  test('unbind: fallback at once, route gone, certificate gone from storage, no new order', async () => {
    const name = 'bound.customer.test';
    assert.notEqual((await insecureGet(name, httpsPort)).fingerprint256, fallback);
    const res = await call('DELETE', `/v1/domains/${name}`);
    assert.equal(res.status, 204, res.body);
    const orders = pebble.ordersPlaced();
    const after = await insecureGet(name, httpsPort);
    assert.equal(after.fingerprint256, fallback);
    assert.equal((JSON.parse(after.body) as { name: string }).name, 'platform', 'the binding’s route is gone');
    assert.equal(await gw.storage.get(keys.certificate(gw.gateway.issuer.ca, name)), null);
    assert.equal(pebble.ordersPlaced(), orders);
    await events.waitFor((e) => e.event === 'domain-unbound' && e.data.name === name, 5000);
  });
});
