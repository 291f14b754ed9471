// Issue 5 acceptance (part B): with Pebble rejecting 15% of nonces and the first validations of
// some names failing (their DNS points at 127.0.0.2, where nothing listens, until the test fixes
// it), every certificate is obtained eventually, a name in backoff gets the fallback with no
// order, and retries are spaced as configured (shortened here): checked on the backoff the log
// recorded and the time of the next attempt, not on wall-clock speed.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { CertificateEvent } from '../../src/issuance/events.ts';
import { peerCertificate } from '../support/clients.ts';
import { fallbackFingerprint, startTestGateway, type TestGateway } from '../support/gateway.ts';
import { capturingLogger, type LogLine } from '../support/log-lines.ts';
import { startPebbleOnFreePorts, type MockDns, type PebbleHandle } from '../support/pebble.ts';

const DELAYS_MS = [2000, 3000];
const DEADLINE_MS = 90_000;

describe('issuance retries: badNonce and failed validations', () => {
  let pebble: PebbleHandle;
  let dns: MockDns;
  let gw: TestGateway;
  let fallback: string;
  let lines: LogLine[];
  const events: CertificateEvent[] = [];

  before(async () => {
    let httpsPort: number;
    let httpPort: number;
    ({ pebble, dns, httpsPort, httpPort } = await startPebbleOnFreePorts({ env: { PEBBLE_WFE_NONCEREJECT: '15' } }));
    const capture = capturingLogger();
    lines = capture.lines;
    gw = await startTestGateway({
      pebble,
      httpsPort,
      httpPort,
      logger: capture.logger,
      config: {
        onDemand: { allow: ['*.retry.test'] },
        acme: { challenges: ['http-01'], retry: { delays: DELAYS_MS, then: DELAYS_MS.at(-1), giveUpAfter: '1h' } },
      },
    });
    gw.gateway.events.on((e) => events.push(e));
    fallback = await fallbackFingerprint(gw);
  });

  after(async () => {
    await gw?.close();
    await pebble?.stop();
  });

  const served = async (name: string) => (await peerCertificate(gw.gateway.httpsPort, name)).fingerprint256;
  const failuresOf = (name: string) => events.filter((e) => e.type === 'issuance-failed' && e.domain === name).length;

  /** Handshakes until the name is served a real certificate (bounded). */
  async function eventually(name: string): Promise<string> {
    const deadline = Date.now() + DEADLINE_MS;
    for (;;) {
      const fp = await served(name);
      if (fp !== fallback) return fp;
      if (Date.now() > deadline) throw new Error(`${name}: still the fallback after ${DEADLINE_MS} ms`);
      await sleep(250);
    }
  }

  /** Handshakes until the name has failed `n` times (bounded); every handshake meanwhile gets the fallback. */
  async function untilFailures(name: string, n: number): Promise<void> {
    const deadline = Date.now() + DEADLINE_MS;
    while (failuresOf(name) < n) {
      assert.equal(await served(name), fallback);
      if (Date.now() > deadline) throw new Error(`${name}: ${failuresOf(name)} failure(s), wanted ${n}`);
      await sleep(250);
    }
  }

  test('every certificate is obtained eventually; retries are spaced as configured', async () => {
    const flaky = ['flaky-once.retry.test', 'flaky-twice.retry.test'];
    for (const name of flaky) await dns.setA(name, ['127.0.0.2']);

    // First attempt fails; right after, the name is in backoff: fallback at once, no order.
    for (const name of flaky) await untilFailures(name, 1);
    const orders = pebble.ordersPlaced();
    for (const name of flaky) assert.equal(await served(name), fallback);
    assert.equal(pebble.ordersPlaced(), orders, 'a name in backoff causes no order');
    assert.match((await gw.gateway.manager.backoff(flaky[0]!)) ?? '', /in backoff after 1 failure/);

    await dns.clearA(flaky[0]!);
    await untilFailures(flaky[1]!, 2);
    await dns.clearA(flaky[1]!);

    // Names that validate at once, under 15% nonce rejection, and the flaky ones once fixed.
    const fine = Array.from({ length: 4 }, (_, i) => `ok${i}.retry.test`);
    for (const name of [...fine, ...flaky]) assert.notEqual(await eventually(name), fallback);
    assert.ok(lines.some((l) => l.msg === 'acme badNonce, retrying'), 'Pebble did reject nonces');

    // Spacing: the n-th failure scheduled the next attempt DELAYS_MS[n-1] later, and the next
    // order started no earlier than that.
    for (const [name, failures] of [[flaky[0]!, 1], [flaky[1]!, 2]] as const) {
      const backoffs = lines.filter((l) => l.step === 'retry-backoff' && l.domain === name);
      assert.equal(backoffs.length, failures, `${name}: one backoff per failure`);
      const starts = events.filter((e) => e.type === 'issuance-started' && e.domain === name).map((e) => Date.parse(e.at));
      assert.equal(starts.length, failures + 1, `${name}: one order per attempt`);
      backoffs.forEach((b, i) => {
        assert.equal(b.retryInMs, DELAYS_MS[i], `${name}: backoff after failure ${i + 1}`);
        assert.ok(starts[i + 1]! >= Date.parse(String(b.retryAt)), `${name}: attempt ${i + 2} started before its retry time`);
      });
    }
    // Success clears the backoff, for the whole cluster.
    for (const name of flaky) assert.equal(await gw.gateway.manager.backoff(name), null);
  });
});
