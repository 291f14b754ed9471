// Issue 5 acceptance, ARI and profiles, through the fault-injecting ACME proxy in front of real
// Pebble (Debian's Pebble 2.4 has neither): a renewalInfo window in the past → renewed now, with
// `replaces: <certID>` in the new order; a window in the future → not renewed, and renewalInfo is
// asked again no sooner than its Retry-After; `acme.profile` is sent because the directory
// advertises it.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ariCertId } from '../../src/acme/plumbing/ari.ts';
import { loadCertificate } from '../../src/issuance/store.ts';
import { startAcmeProxy, type AcmeFaultProxy, type RenewalInfoAnswer } from '../support/acme-proxy.ts';
import { peerCertificate } from '../support/clients.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { startPebbleOnFreePorts, type PebbleHandle } from '../support/pebble.ts';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

let pebble: PebbleHandle;
let proxy: AcmeFaultProxy;
let gw: TestGateway;
const windows = new Map<string, RenewalInfoAnswer>();

before(async () => {
  let httpsPort: number;
  let httpPort: number;
  ({ pebble, httpsPort, httpPort } = await startPebbleOnFreePorts());
  proxy = await startAcmeProxy(pebble);
  proxy.setProfiles({ tlsserver: 'https://ca.test/profiles/tlsserver', shortlived: 'https://ca.test/profiles/shortlived' });
  // Certificates the test has not set a window for: far in the future, asked again after 1 s.
  proxy.setRenewalInfo((certId) => windows.get(certId) ?? { start: new Date(Date.now() + 30 * DAY), end: new Date(Date.now() + 31 * DAY), retryAfterSeconds: 1 });
  gw = await startTestGateway({
    pebble,
    httpsPort,
    httpPort,
    config: {
      acme: { directory: proxy.directoryUrl, trustedRoots: [proxy.listenerCaPath], profile: 'tlsserver' },
      onDemand: { allow: ['*.ari.test'] },
      renewal: { checkInterval: '200ms' },
    },
  });
});

after(async () => {
  await gw?.close();
  await proxy?.close();
  await pebble?.stop();
});

async function issue(name: string): Promise<{ certId: string; fingerprint256: string }> {
  const cert = await peerCertificate(gw.gateway.httpsPort, name);
  assert.ok(String(cert.subjectaltname).includes(`DNS:${name}`), `${name} issued`);
  const bundle = await loadCertificate(gw.storage, [gw.gateway.issuer.ca], name);
  assert.ok(bundle);
  const certId = ariCertId(bundle.certPem);
  assert.ok(certId, 'Pebble certificates carry an AKI');
  return { certId, fingerprint256: bundle.fingerprint256 };
}

async function until(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

test('profiles: acme.profile is sent in the new order when the directory advertises it', async () => {
  await issue('profile.ari.test');
  const order = proxy.newOrders().find((o) => o.domains[0] === 'profile.ari.test');
  assert.equal(order?.profile, 'tlsserver');
  assert.equal(order?.replaces, undefined, 'a first issuance replaces nothing');
});

test('ARI: a window in the past → renewed now with `replaces`; a future window → not renewed, renewalInfo re-asked after Retry-After', async () => {
  const past = await issue('past.ari.test');
  const future = await issue('future.ari.test');
  windows.set(future.certId, { start: new Date(Date.now() + 10 * DAY), end: new Date(Date.now() + 11 * DAY), retryAfterSeconds: 2 });
  windows.set(past.certId, { start: new Date(Date.now() - 2 * HOUR), end: new Date(Date.now() - HOUR), retryAfterSeconds: 60 });

  await until('the renewal of past.ari.test', () => proxy.newOrders().some((o) => o.domains[0] === 'past.ari.test' && o.replaces !== undefined));
  const renewal = proxy.newOrders().filter((o) => o.domains[0] === 'past.ari.test');
  assert.equal(renewal.length, 2, 'first issuance + one renewal');
  assert.equal(renewal[1]!.replaces, past.certId, 'the order names the certificate it replaces');
  assert.equal(renewal[1]!.profile, 'tlsserver', 'renewals carry the profile too');
  await until('the renewed certificate in storage', async () => (await loadCertificate(gw.storage, [gw.gateway.issuer.ca], 'past.ari.test'))?.fingerprint256 !== past.fingerprint256);

  // The future window: asked at least three times (the window set above, Retry-After 2 s).
  const asks = (): number[] => proxy.exchanges().filter((e) => e.kind === 'renewalInfo' && e.path.endsWith(future.certId)).map((e) => e.at);
  const firstFutureAsk = asks().length;
  await until('renewalInfo asked again for future.ari.test', () => asks().length >= firstFutureAsk + 3, 20_000);
  const times = asks().slice(firstFutureAsk);
  for (let i = 1; i < times.length; i++) assert.ok(times[i]! - times[i - 1]! >= 1900, `re-asked after ${times[i]! - times[i - 1]!} ms, Retry-After was 2 s`);
  assert.equal(proxy.newOrders().filter((o) => o.domains[0] === 'future.ari.test').length, 1, 'future window: not renewed');
  assert.equal((await loadCertificate(gw.storage, [gw.gateway.issuer.ca], 'future.ari.test'))?.fingerprint256, future.fingerprint256);
});
