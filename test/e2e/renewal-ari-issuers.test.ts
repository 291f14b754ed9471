// ARI renewal with two issuers (RFC 9773 §5: `replaces` names a certificate of the same CA).
// Two fault-injecting proxies in front of one real Pebble are two CAs with their own ids and
// accounts; like a real CA, each refuses an order whose `replaces` names a certificate it did not
// issue. The first issuer is down when the certificate is issued, so the second issues it; its
// ARI window then says "renew now":
//   - first issuer back up: it gets a plain new order (no `replaces`, counted in its budgets) and
//     issues the renewal, no refused order;
//   - first issuer still down: its order is plain too; the second, which issued the certificate,
//     gets `replaces` and renews it exempt from the budgets.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ariCertId } from '../../src/acme/plumbing/ari.ts';
import { getJson } from '../../src/storage/storage.ts';
import { loadCertificate, type CertificateMeta } from '../../src/issuance/store.ts';
import { caIdFromDirectory, keys } from '../../src/storage/keys.ts';
import { startAcmeProxy, type AcmeFaultProxy, type NewOrderRecord, type RenewalInfoAnswer } from '../support/acme-proxy.ts';
import { peerCertificate } from '../support/clients.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { startPebble, type PebbleHandle } from '../support/pebble.ts';
import { freePort } from '../support/ports.ts';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const FIRST_DOWN = { status: 500, detail: 'first issuer down (injected)' } as const;

describe('ARI renewal of a certificate the second issuer issued', () => {
  let pebble: PebbleHandle;
  let first: AcmeFaultProxy;
  let second: AcmeFaultProxy;
  let firstCa: string;
  let secondCa: string;
  let gw: TestGateway;
  const windows = new Map<string, RenewalInfoAnswer>();
  /** CA of each renewal, by name, once the manager is done with it (stored, budgets counted). */
  const renewedBy = new Map<string, string>();

  before(async () => {
    const httpsPort = await freePort();
    const httpPort = await freePort();
    pebble = await startPebble({ httpPort, tlsPort: httpsPort });
    [first, second] = await Promise.all([startAcmeProxy(pebble), startAcmeProxy(pebble)]);
    firstCa = caIdFromDirectory(first.directoryUrl);
    secondCa = caIdFromDirectory(second.directoryUrl);
    assert.notEqual(firstCa, secondCa);
    // Certificates the test has not set a window for: far in the future, asked again after 1 s.
    const renewalInfo = (certId: string): RenewalInfoAnswer => windows.get(certId) ?? { start: new Date(Date.now() + 30 * DAY), end: new Date(Date.now() + 31 * DAY), retryAfterSeconds: 1 };
    for (const ca of [first, second]) {
      ca.setRenewalInfo(renewalInfo);
      ca.rejectForeignReplaces(true);
    }
    gw = await startTestGateway({
      pebble,
      httpsPort,
      httpPort,
      config: {
        acme: {
          directory: undefined,
          issuers: [{ directory: first.directoryUrl }, { directory: second.directoryUrl }],
          // Every issuer budgeted, so the ARI exemption shows in the counts.
          budgets: { newOrders: { limit: 1000, window: '3h' } },
        },
        onDemand: { allow: ['*.ari-issuers.test'] },
        renewal: { checkInterval: '200ms' },
      },
    });
    gw.gateway.events.on((e) => {
      if (e.type === 'renewed') renewedBy.set(e.domain, e.ca);
    });
  });

  after(async () => {
    await gw?.close();
    await first?.close();
    await second?.close();
    await pebble?.stop();
  });

  /** Issues `name` while the first issuer refuses orders: the second issues it. */
  async function issueFromSecond(name: string): Promise<{ certId: string; fingerprint256: string }> {
    first.failAlways('newOrder', FIRST_DOWN);
    try {
      const cert = await peerCertificate(gw.gateway.httpsPort, name);
      assert.ok(String(cert.subjectaltname).includes(`DNS:${name}`), `${name} issued`);
    } finally {
      first.failAlways('newOrder', undefined);
    }
    const meta = await getJson<CertificateMeta>(gw.storage, keys.certificateMeta(secondCa, name));
    assert.ok(meta, `${name}: stored under the second issuer's CA`);
    assert.equal(meta.ca, secondCa, `${name}: meta.json records the second issuer's CA`);
    assert.equal(meta.directory, second.directoryUrl);
    const bundle = await loadCertificate(gw.storage, [secondCa], name);
    assert.ok(bundle);
    const certId = ariCertId(bundle.certPem);
    assert.ok(certId, 'Pebble certificates carry an AKI');
    assert.ok(second.servedCertIds().includes(certId), 'the second CA knows the certificate it issued');
    return { certId, fingerprint256: bundle.fingerprint256 };
  }

  /** Opens the ARI window of `certId` in the past; resolves with the CA that renewed `name`. */
  async function renewNow(name: string, old: { certId: string; fingerprint256: string }): Promise<string> {
    windows.set(old.certId, { start: new Date(Date.now() - 2 * HOUR), end: new Date(Date.now() - HOUR), retryAfterSeconds: 60 });
    const deadline = Date.now() + 60_000;
    // The event comes after the certificate is stored and counted in the budgets.
    while (!renewedBy.has(name)) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for the renewal of ${name}`);
      await sleep(100);
    }
    const current = await loadCertificate(gw.storage, [firstCa, secondCa], name);
    assert.notEqual(current?.fingerprint256, old.fingerprint256, `${name}: a new certificate is served`);
    assert.equal(current?.ca, renewedBy.get(name));
    return renewedBy.get(name)!;
  }

  const ordersFor = (ca: AcmeFaultProxy, name: string): NewOrderRecord[] => ca.newOrders().filter((o) => o.domains[0] === name);
  const newOrdersLeft = async (ca: string): Promise<number> => (await gw.gateway.budgets.remaining('newOrders', ca, '')).remaining;

  test('first issuer back up: it gets a plain order (budgeted) and renews; `replaces` never reaches it', async () => {
    const name = 'back-up.ari-issuers.test';
    const old = await issueFromSecond(name);
    const [firstLeft, secondLeft] = [await newOrdersLeft(firstCa), await newOrdersLeft(secondCa)];

    const renewingCa = await renewNow(name, old);

    const toFirst = ordersFor(first, name);
    assert.equal(toFirst.length, 2, 'the refused first issuance and the renewal');
    assert.equal(toFirst[1]!.replaces, undefined, `no \`replaces\` in the order to a CA that did not issue the certificate: ${JSON.stringify(toFirst[1]!.payload)}`);
    assert.equal(toFirst[1]!.status, 201, 'the first CA accepted the plain order');
    assert.equal(renewingCa, firstCa, 'issuer preference kept: the first issuer renews');
    assert.equal(ordersFor(second, name).length, 1, 'the first issuer renewed it: no order to the second');
    assert.equal(await newOrdersLeft(firstCa), firstLeft - 1, 'the plain order counts in the first CA\'s budget');
    assert.equal(await newOrdersLeft(secondCa), secondLeft);
    assert.equal((await gw.gateway.budgets.remaining('duplicates', firstCa, name)).remaining, 4, 'the first CA\'s certificate counts as a duplicate there');
  });

  test('first issuer still down: its order is plain; the issuing CA gets `replaces` and renews exempt', async () => {
    const name = 'still-down.ari-issuers.test';
    const old = await issueFromSecond(name);
    const [firstLeft, secondLeft] = [await newOrdersLeft(firstCa), await newOrdersLeft(secondCa)];
    const duplicatesLeft = (await gw.gateway.budgets.remaining('duplicates', secondCa, name)).remaining;

    first.failAlways('newOrder', FIRST_DOWN);
    let renewingCa: string;
    try {
      renewingCa = await renewNow(name, old);
    } finally {
      first.failAlways('newOrder', undefined);
    }

    const toFirst = ordersFor(first, name);
    assert.equal(toFirst.length, 2, 'the first issuance and the renewal, both refused');
    for (const order of toFirst) assert.equal(order.replaces, undefined, `no \`replaces\` in an order to the first CA: ${JSON.stringify(order.payload)}`);
    const toSecond = ordersFor(second, name);
    assert.equal(toSecond.length, 2, 'first issuance and one renewal');
    assert.equal(toSecond[1]!.replaces, old.certId, 'the CA that issued the certificate is told which one it replaces');
    assert.equal(toSecond[1]!.status, 201);
    assert.equal(renewingCa, secondCa);
    assert.equal(await newOrdersLeft(firstCa), firstLeft - 1, 'the plain order to the first CA counts in its budget');
    assert.equal(await newOrdersLeft(secondCa), secondLeft, 'the order that carries `replaces` is exempt');
    assert.equal((await gw.gateway.budgets.remaining('duplicates', secondCa, name)).remaining, duplicatesLeft, 'the ARI renewal is not counted as a duplicate');
  });
});
