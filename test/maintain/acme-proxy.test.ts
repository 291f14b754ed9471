// The fault-injecting ACME proxy in front of real Pebble: passes ACME through, adds ARI and
// profiles to the directory, injects 429 with Retry-After, records newOrder payloads.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { AcmeClient } from '../../src/acme/client.ts';
import { generateAccountKey } from '../../src/acme/certs.ts';
import { isAcmeError } from '../../src/acme/errors.ts';
import { startAcmeProxy, type AcmeFaultProxy } from '../support/acme-proxy.ts';
import { startPebbleOnFreePorts, type PebbleHandle } from '../support/pebble.ts';

let pebble: PebbleHandle;
let proxy: AcmeFaultProxy;
let client: AcmeClient;

before(async () => {
  ({ pebble } = await startPebbleOnFreePorts());
  proxy = await startAcmeProxy(pebble);
  client = new AcmeClient({
    directoryUrl: proxy.directoryUrl,
    accountKey: generateAccountKey(),
    trustedRoots: [await readFile(proxy.listenerCaPath, 'utf8')],
  });
});

after(async () => {
  await client?.close();
  await proxy?.close();
  await pebble?.stop();
});

test('acme-proxy: directory gains renewalInfo and meta.profiles; orders pass through with their payload recorded', async () => {
  proxy.setProfiles({ tlsserver: 'https://example.test/tlsserver', shortlived: 'https://example.test/shortlived' });
  proxy.setRenewalInfo((certId) =>
    certId === 'aaa.bbb' ? { start: new Date(0), end: new Date(1000), retryAfterSeconds: 42 } : undefined,
  );
  const dir = await client.getDirectory();
  assert.equal(dir.renewalInfo, `${proxy.origin}/renewal-info`);
  assert.deepEqual(Object.keys(dir.meta?.profiles ?? {}).sort(), ['shortlived', 'tlsserver']);
  assert.ok(dir.newOrder.startsWith(proxy.origin), 'Pebble URLs point back at the proxy');

  const order = await client.newOrder(['a.proxy.test'], { profile: 'tlsserver', replaces: 'xyz.123' });
  assert.equal(order.status, 'pending');
  assert.equal(proxy.ordersPlaced(), 1);
  assert.equal(pebble.ordersPlaced(), 1);
  const [rec] = proxy.newOrders();
  assert.deepEqual(rec?.domains, ['a.proxy.test']);
  assert.equal(rec?.profile, 'tlsserver');
  assert.equal(rec?.replaces, 'xyz.123');
});

test('acme-proxy: failNext injects 429 with Retry-After on the next newOrder only', async () => {
  proxy.reset();
  proxy.failNext('newOrder', 1, { status: 429, retryAfterSeconds: 7 });
  await assert.rejects(client.newOrder(['b.proxy.test']), (err: unknown) => {
    assert.ok(isAcmeError(err));
    assert.equal(err.status, 429);
    assert.equal(err.type, 'urn:ietf:params:acme:error:rateLimited');
    assert.equal(err.retryAfterMs, 7000);
    return true;
  });
  const before = pebble.ordersPlaced();
  await client.newOrder(['b.proxy.test']);
  assert.equal(pebble.ordersPlaced(), before + 1);
  assert.deepEqual(proxy.newOrders().map((o) => [o.status, o.injected]), [[429, true], [201, false]]);
  assert.equal(proxy.ordersPlaced(), 1);
});

test('profile not advertised by the directory: the client places the order without it (and warns once)', async () => {
  proxy.reset();
  proxy.setProfiles(undefined);
  const plain = new AcmeClient({ directoryUrl: proxy.directoryUrl, accountKey: generateAccountKey(), trustedRoots: [await readFile(proxy.listenerCaPath, 'utf8')] });
  try {
    await plain.newOrder(['c.proxy.test'], { profile: 'shortlived' });
    const [rec] = proxy.newOrders();
    assert.equal(rec?.status, 201);
    assert.equal(rec?.profile, undefined, 'profile dropped');
  } finally {
    await plain.close();
  }
});

test('renewalInfo through the client: window and Retry-After; null without renewalInfo in the directory', async () => {
  proxy.setRenewalInfo((certId) => (certId === 'aaa.bbb' ? { start: '2030-01-01T00:00:00Z', end: '2030-01-02T00:00:00Z', retryAfterSeconds: 42 } : undefined));
  const info = await client.renewalInfo('aaa.bbb');
  assert.deepEqual(info, { suggestedWindow: { start: '2030-01-01T00:00:00Z', end: '2030-01-02T00:00:00Z' }, retryAfterMs: 42_000 });
  await assert.rejects(client.renewalInfo('unknown.id'), /404|unknown certificate/);
  assert.deepEqual(proxy.renewalInfoRequests().slice(-2), ['aaa.bbb', 'unknown.id']);
  const fresh = new AcmeClient({ directoryUrl: proxy.directoryUrl, accountKey: generateAccountKey(), trustedRoots: [await readFile(proxy.listenerCaPath, 'utf8')] });
  proxy.setRenewalInfo(undefined);
  try {
    assert.equal(await fresh.renewalInfo('aaa.bbb'), null);
  } finally {
    await fresh.close();
  }
});
