// The fault-injecting ACME proxy in front of real Pebble: passes ACME through, adds ARI and
// profiles to the directory, injects 429 with Retry-After, records newOrder payloads.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { AcmeAccount } from '../../src/acme/plumbing/account.ts';
import { getRenewalInfo } from '../../src/acme/plumbing/ari.ts';
import { isAcmeError } from '../../src/acme/plumbing/errors.ts';
import { newOrder } from '../../src/acme/plumbing/order.ts';
import { generateAccountKey } from '../../src/acme/x509.ts';
import { startAcmeProxy, type AcmeFaultProxy } from '../support/acme-proxy.ts';
import { startPebbleOnFreePorts, type PebbleHandle } from '../support/pebble.ts';

let pebble: PebbleHandle;
let proxy: AcmeFaultProxy;
let client: AcmeAccount;

before(async () => {
  ({ pebble } = await startPebbleOnFreePorts());
  proxy = await startAcmeProxy(pebble);
  client = AcmeAccount.connect({
    directoryUrl: proxy.directoryUrl,
    accountKey: generateAccountKey(),
    trustedRoots: [await readFile(proxy.listenerCaPath, 'utf8')],
  });
});

after(async () => {
  await client?.transport.close();
  await proxy?.close();
  await pebble?.stop();
});

test('acme-proxy: directory gains renewalInfo and meta.profiles; orders pass through with their payload recorded', async () => {
  proxy.setProfiles({ tlsserver: 'https://example.test/tlsserver', shortlived: 'https://example.test/shortlived' });
  proxy.setRenewalInfo((certId) =>
    certId === 'aaa.bbb' ? { start: new Date(0), end: new Date(1000), retryAfterSeconds: 42 } : undefined,
  );
  const dir = await client.directory.get();
  assert.equal(dir.renewalInfo, `${proxy.origin}/renewal-info`);
  assert.deepEqual(Object.keys(dir.meta?.profiles ?? {}).sort(), ['shortlived', 'tlsserver']);
  assert.ok(dir.newOrder.startsWith(proxy.origin), 'Pebble URLs point back at the proxy');

  const order = await newOrder(client, ['a.proxy.test'], { profile: 'tlsserver', replaces: 'xyz.123' });
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
  await assert.rejects(newOrder(client, ['b.proxy.test']), (err: unknown) => {
    assert.ok(isAcmeError(err));
    assert.equal(err.status, 429);
    assert.equal(err.type, 'urn:ietf:params:acme:error:rateLimited');
    assert.equal(err.retryAfterMs, 7000);
    return true;
  });
  const before = pebble.ordersPlaced();
  await newOrder(client, ['b.proxy.test']);
  assert.equal(pebble.ordersPlaced(), before + 1);
  assert.deepEqual(proxy.newOrders().map((o) => [o.status, o.injected]), [[429, true], [201, false]]);
  assert.equal(proxy.ordersPlaced(), 1);
});

test('profile not advertised by the directory: the client places the order without it (and warns once)', async () => {
  proxy.reset();
  proxy.setProfiles(undefined);
  const plain = AcmeAccount.connect({ directoryUrl: proxy.directoryUrl, accountKey: generateAccountKey(), trustedRoots: [await readFile(proxy.listenerCaPath, 'utf8')] });
  try {
    await newOrder(plain, ['c.proxy.test'], { profile: 'shortlived' });
    const [rec] = proxy.newOrders();
    assert.equal(rec?.status, 201);
    assert.equal(rec?.profile, undefined, 'profile dropped');
  } finally {
    await plain.transport.close();
  }
});

test('renewalInfo through the client: window and Retry-After; null without renewalInfo in the directory', async () => {
  proxy.setRenewalInfo((certId) => (certId === 'aaa.bbb' ? { start: '2030-01-01T00:00:00Z', end: '2030-01-02T00:00:00Z', retryAfterSeconds: 42 } : undefined));
  const info = await getRenewalInfo(client.directory, 'aaa.bbb');
  assert.deepEqual(info, { suggestedWindow: { start: '2030-01-01T00:00:00Z', end: '2030-01-02T00:00:00Z' }, retryAfterMs: 42_000 });
  await assert.rejects(getRenewalInfo(client.directory, 'unknown.id'), /404|unknown certificate/);
  assert.deepEqual(proxy.renewalInfoRequests().slice(-2), ['aaa.bbb', 'unknown.id']);
  const fresh = AcmeAccount.connect({ directoryUrl: proxy.directoryUrl, accountKey: generateAccountKey(), trustedRoots: [await readFile(proxy.listenerCaPath, 'utf8')] });
  proxy.setRenewalInfo(undefined);
  try {
    assert.equal(await getRenewalInfo(fresh.directory, 'aaa.bbb'), null);
  } finally {
    await fresh.transport.close();
  }
});
