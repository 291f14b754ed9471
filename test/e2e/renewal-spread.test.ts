// Issue 5 acceptance: 200 certificates due in the same hour renew spread over the jitter window,
// never more than renewal.concurrency at once, and a client handshaking throughout always gets
// the right certificate for its name. Real Pebble issues the renewals; the 200 starting
// certificates are seeded in storage with a validity that makes them due ~50 s from now
// (30-day lifetime, a third remaining), so nothing waits for real expiry.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadCertificate } from '../../src/issuance/store.ts';
import { dueTime, renewalTime } from '../../src/maintain/timing.ts';
import { peerCertificate } from '../support/clients.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { startPebbleOnFreePorts, type PebbleHandle } from '../support/pebble.ts';
import { seedCertificates } from '../maintain/seed.ts';

const DAY = 86_400_000;
const COUNT = 200;
const CONCURRENCY = 4;
const JITTER_MS = 40_000;
const LIFETIME = 30 * DAY;
const FRACTION = 0.33;

let pebble: PebbleHandle;
let gw: TestGateway;
let httpsPort: number;

before(async () => {
  let httpPort: number;
  ({ pebble, httpsPort, httpPort } = await startPebbleOnFreePorts());
  gw = await startTestGateway({
    pebble,
    httpsPort,
    httpPort,
    config: {
      onDemand: { allow: ['*.spread.test'], maxConcurrentIssuances: 16 },
      renewal: { fraction: FRACTION, concurrency: CONCURRENCY, checkInterval: '250ms', jitter: JITTER_MS },
    },
  });
});

after(async () => {
  await gw?.close();
  await pebble?.stop();
});

test('renewal: 200 certificates due in the same hour renew spread over the window, at most `concurrency` at once, serving never fails', async () => {
  const { gateway } = gw;
  const domains = Array.from({ length: COUNT }, (_, i) => `r${String(i).padStart(3, '0')}.spread.test`);
  // Renewal starts and finishes, from the manager's lifecycle events; listening before the
  // seeding, as on a loaded machine the first renewals may start while it is still going on.
  const starts = new Map<string, number>();
  const renewed = new Map<string, number>();
  let running = 0;
  let maxRunning = 0;
  gateway.events.on((e) => {
    if (e.type === 'issuance-started' && e.reason === 'renewal') {
      starts.set(e.domain, Date.now());
      maxRunning = Math.max(maxRunning, ++running);
    } else if (e.type === 'renewed' || (e.type === 'issuance-failed' && e.renewal)) {
      running--;
      if (e.type === 'renewed') renewed.set(e.domain, (renewed.get(e.domain) ?? 0) + 1);
    }
  });

  // Due (a third of 30 days remaining) 50 s from now; with the 40 s jitter window the renewals
  // belong in [now + 10 s, now + 50 s].
  const dueAt = Date.now() + 50_000;
  // Whole seconds: certificates carry their validity to the second.
  const notAfter = new Date(Math.floor((dueAt + LIFETIME * FRACTION) / 1000) * 1000);
  const notBefore = new Date(notAfter.getTime() - LIFETIME);
  assert.ok(Math.abs(dueTime(notBefore.getTime(), notAfter.getTime(), FRACTION) - dueAt) < 1000);
  const seeded = await seedCertificates({ storage: gw.storage, ca: gateway.issuer.ca, directory: pebble.directoryUrl, domains, notBefore, notAfter });
  const renewAt = new Map(domains.map((d) => [d, renewalTime(d, notBefore.getTime(), notAfter.getTime(), { fraction: FRACTION, jitterMs: JITTER_MS })]));
  const windowStart = dueAt - JITTER_MS;

  // A client handshaking with random names the whole time.
  let handshakes = 0;
  const wrong: string[] = [];
  let stop = false;
  const client = (async () => {
    while (!stop) {
      const name = domains[Math.floor(Math.random() * domains.length)]!;
      try {
        const cert = await peerCertificate(httpsPort, name);
        handshakes++;
        if (!String(cert.subjectaltname ?? '').includes(`DNS:${name}`)) wrong.push(`${name}: got ${cert.subject?.CN ?? '?'}`);
      } catch (err) {
        wrong.push(`${name}: ${(err as Error).message}`);
      }
      await sleep(20);
    }
  })();

  const deadline = Date.now() + 150_000;
  // Names the scheduler has taken up by mid-window (renewing, waiting for a slot, or done): when
  // they come due, whatever the machine's speed. (Renewals *started* by then also depend on how
  // fast Pebble issues, as only `concurrency` run at once.)
  let atMidWindow: number | undefined;
  const midWindow = windowStart + JITTER_MS / 2;
  while (renewed.size < COUNT && Date.now() < deadline) {
    if (atMidWindow === undefined && Date.now() >= midWindow) {
      atMidWindow = new Set([...gateway.maintainer!.scheduler.renewing, ...renewed.keys()]).size;
    }
    await sleep(200);
  }
  stop = true;
  await client;
  const stats = gateway.maintainer!.scheduler.stats;
  assert.equal(renewed.size, COUNT, `all renewed (stats ${JSON.stringify(stats)}, ${starts.size} started)`);
  assert.deepEqual([...renewed].filter(([, n]) => n !== 1), [], 'each name renewed exactly once');
  assert.equal(pebble.certificatesIssued(), COUNT, 'one order per name');

  // Spread: nobody renews before its own jittered time, and the renewals follow those times
  // across the window rather than all starting at the due time.
  for (const [domain, at] of starts) assert.ok(at >= renewAt.get(domain)! - 5, `${domain} renewed ${renewAt.get(domain)! - at} ms early`);
  const first = Math.min(...starts.values());
  const last = Math.max(...starts.values());
  assert.ok(first < dueAt - JITTER_MS / 2, `first renewal ${first - windowStart} ms into the window`);
  assert.ok(last - first >= JITTER_MS / 2, `renewals span ${last - first} ms`);
  assert.ok((atMidWindow ?? 0) >= COUNT * 0.2, `${atMidWindow} of ${COUNT} taken up by mid-window`);

  // Never more than the configured concurrency at once.
  assert.ok(maxRunning <= CONCURRENCY, `max ${maxRunning} renewals at once`);
  assert.ok(stats.maxRunning <= CONCURRENCY);
  assert.ok(maxRunning >= 2, 'renewals did overlap (the cap was exercised)');

  // Every name now has a Pebble certificate in storage; serving never failed.
  for (const domain of domains) {
    const bundle = await loadCertificate(gw.storage, [gateway.issuer.ca], domain);
    assert.ok(bundle && bundle.fingerprint256 !== seeded.get(domain), `${domain} replaced`);
  }
  assert.ok(handshakes > 100, `${handshakes} handshakes during renewal`);
  assert.deepEqual(wrong, []);
  assert.equal(gw.outcomes.filter((o) => o.outcome === 'fallback' || o.outcome === 'error').length, 0);
});
