// Issue 5: a certificate a handshake finds inside its renewal time is served at once and renewed
// in the background; the next handshakes get the new one. The renewal loop is kept out of the
// way (checkInterval 1h), so only the handshake can have started this renewal. An edge on the
// same storage serves the due certificate but leaves renewal to the maintainers.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadCertificate } from '../../src/issuance/store.ts';
import { peerCertificate } from '../support/clients.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { startPebbleOnFreePorts, type PebbleHandle } from '../support/pebble.ts';
import { freePort } from '../support/ports.ts';
import { seedCertificates } from '../maintain/seed.ts';

const DAY = 86_400_000;
let pebble: PebbleHandle;
let gw: TestGateway;
let edge: TestGateway;

before(async () => {
  let httpsPort: number;
  let httpPort: number;
  ({ pebble, httpsPort, httpPort } = await startPebbleOnFreePorts());
  gw = await startTestGateway({ pebble, httpsPort, httpPort, config: { onDemand: { allow: ['*.hs.test'] }, renewal: { checkInterval: '1h' } } });
  edge = await startTestGateway({ pebble, httpsPort: await freePort(), httpPort: await freePort(), dataDir: gw.dataDir, config: { role: 'edge', onDemand: { allow: ['*.hs.test'] } } });
});

after(async () => {
  await edge?.close({ keepData: true });
  await gw?.close();
  await pebble?.stop();
});

function fingerprintOf(cert: { fingerprint256?: string }): string | undefined {
  return cert.fingerprint256;
}

test('handshake inside the renewal time: served the current certificate, renewal runs in the background', async () => {
  // 90-day certificate with 20 days left: past its renewal time (30 days left), still valid.
  const notAfter = new Date(Math.floor((Date.now() + 20 * DAY) / 1000) * 1000);
  const notBefore = new Date(notAfter.getTime() - 90 * DAY);
  const seeded = await seedCertificates({ storage: gw.storage, ca: gw.gateway.issuer.ca, directory: pebble.directoryUrl, domains: ['due.hs.test', 'edge.hs.test'], notBefore, notAfter });

  // The edge serves a due certificate and starts nothing.
  assert.equal(fingerprintOf(await peerCertificate(edge.gateway.httpsPort, 'edge.hs.test')), seeded.get('edge.hs.test'));
  await sleep(1000);
  assert.equal(pebble.ordersPlaced(), 0, 'an edge never renews');

  // The renewal is done when the gateway says so ('renewed' comes after the new certificate is
  // stored and cached); the stored files alone appear a moment before the cache has it.
  let renewed = false;
  gw.gateway.events.on((e) => {
    if (e.type === 'renewed' && e.domain === 'due.hs.test') renewed = true;
  });
  const first = await peerCertificate(gw.gateway.httpsPort, 'due.hs.test');
  assert.equal(fingerprintOf(first), seeded.get('due.hs.test'), 'served the current certificate at once');
  const deadline = Date.now() + 30_000;
  while (!renewed && Date.now() < deadline) await sleep(100);
  assert.ok(renewed, 'renewed in the background');
  const stored = await loadCertificate(gw.storage, [gw.gateway.issuer.ca], 'due.hs.test');
  assert.notEqual(stored?.fingerprint256, seeded.get('due.hs.test'), 'the new certificate is stored');
  assert.equal(pebble.ordersPlaced(), 1, 'one renewal order, for due.hs.test');
  assert.equal(fingerprintOf(await peerCertificate(gw.gateway.httpsPort, 'due.hs.test')), stored?.fingerprint256, 'next handshakes get the new certificate');
  assert.ok(gw.outcomes.every((o) => o.outcome !== 'fallback' && o.outcome !== 'error'));
});
