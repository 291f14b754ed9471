// Issue 5 acceptance: before renewing an on-demand certificate the policy is asked again. A name
// the `ask` endpoint now denies keeps its (still valid) certificate and is not renewed; once it
// has expired it is deleted. A name still approved is renewed as usual (the control). Pebble
// issues 20-second certificates (renewal at half-life, 10 s).
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadCertificate } from '../../src/issuance/store.ts';
import { peerCertificate } from '../support/clients.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { startPebbleOnFreePorts, type PebbleHandle } from '../support/pebble.ts';

let pebble: PebbleHandle;
let gw: TestGateway;
let ask: Server;
const allowed = new Set<string>();
const asked: Array<{ domain: string; at: number }> = [];

before(async () => {
  let httpsPort: number;
  let httpPort: number;
  ({ pebble, httpsPort, httpPort } = await startPebbleOnFreePorts({ certificateValidityPeriod: 20 }));
  ask = createServer((req, res) => {
    const domain = new URL(req.url ?? '/', 'http://x').searchParams.get('domain') ?? '';
    asked.push({ domain, at: Date.now() });
    res.writeHead(allowed.has(domain) ? 200 : 403).end();
  });
  await new Promise<void>((resolve) => ask.listen(0, '127.0.0.1', resolve));
  gw = await startTestGateway({
    pebble,
    httpsPort,
    httpPort,
    config: {
      onDemand: { ask: `http://127.0.0.1:${(ask.address() as AddressInfo).port}/allow`, askCacheTtl: '100ms', askDenyCacheTtl: '100ms' },
      renewal: { checkInterval: '200ms', jitter: '1s' },
    },
  });
});

after(async () => {
  await gw?.close();
  ask?.closeAllConnections();
  ask?.close();
  await pebble?.stop();
});

test('policy re-check: a denied name keeps its valid certificate without renewal, and is deleted once expired', async () => {
  const { gateway } = gw;
  const kept = 'denied.policy.test';
  const control = 'allowed.policy.test';
  allowed.add(kept);
  allowed.add(control);
  for (const name of [kept, control]) assert.ok(String((await peerCertificate(gateway.httpsPort, name)).subjectaltname).includes(`DNS:${name}`));
  const original = await loadCertificate(gw.storage, [gateway.issuer.ca], kept);
  assert.ok(original);
  allowed.delete(kept);
  const deniedSince = Date.now();

  const events: Array<{ type: string; domain: string; at: number }> = [];
  gateway.events.on((e) => events.push({ type: e.type, domain: e.domain, at: Date.now() }));

  // Past half-life: the control is renewed; the denied name was asked about again and not renewed.
  const deadline = Date.now() + 30_000;
  while (!events.some((e) => e.type === 'renewed' && e.domain === control) && Date.now() < deadline) await sleep(100);
  assert.ok(events.some((e) => e.type === 'renewed' && e.domain === control), 'the approved name was renewed');
  while (Date.now() < original.notBefore.getTime() + 12_000) await sleep(100);
  assert.ok(asked.some((a) => a.domain === kept && a.at > deniedSince), 'policy asked again before renewal');
  assert.equal(events.filter((e) => e.domain === kept && e.type !== 'deleted').length, 0, 'denied name: no renewal attempted');
  assert.equal((await loadCertificate(gw.storage, [gateway.issuer.ca], kept))?.fingerprint256, original.fingerprint256, 'certificate kept while valid');
  assert.ok(Date.now() < original.notAfter.getTime(), 'still valid at this point');

  // Once expired it is deleted (from storage and from every cache).
  while (!events.some((e) => e.type === 'deleted' && e.domain === kept) && Date.now() < original.notAfter.getTime() + 20_000) await sleep(100);
  const deleted = events.find((e) => e.type === 'deleted' && e.domain === kept);
  assert.ok(deleted, 'deleted after expiry');
  assert.ok(deleted.at >= original.notAfter.getTime(), 'not before it expired');
  assert.equal(await loadCertificate(gw.storage, [gateway.issuer.ca], kept), null);
  assert.equal(gateway.cache.peek(kept), undefined);
  assert.ok(await loadCertificate(gw.storage, [gateway.issuer.ca], control), 'the approved name is still there');
});
