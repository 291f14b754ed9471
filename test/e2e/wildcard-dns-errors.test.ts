// Issue 15 item 5 acceptance at gateway level, against a real bind9 and Pebble validating against
// it: a managed `*.wild.test` + `wild.test` whose dns-01 cannot work (wrong TSIG secret, the DNS
// server down, the record never answered by the resolvers asked) fails within its bound, with a
// log line naming the step and what the DNS answered; the admin status of the name
// (GET /v1/certificates/{name}) shows the failure; the fallback is served for the covered names;
// an on-demand name allowed by policy (http-01) still gets its certificate; nothing hangs.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { adminCall } from '../support/admin.ts';
import { startBind9, type Bind9Handle } from '../support/bind9.ts';
import { httpsGet, peerCertificate } from '../support/clients.ts';
import { fallbackFingerprint, startTestGateway } from '../support/gateway.ts';
import { capturingLogger, type LogLine } from '../support/log-lines.ts';
import { startPebbleOnFreePorts, type PebbleOnFreePorts } from '../support/pebble.ts';
import { freePort } from '../support/ports.ts';

const KEY = { name: 'certgate-key', algorithm: 'hmac-sha256', secret: Buffer.alloc(32, 0x3c).toString('base64') } as const;
const WRONG_SECRET = Buffer.alloc(32, 0x01).toString('base64');
const MANAGED = ['*.wild.test', 'wild.test'];
const OTHER = 'app.ondemand.test';
/** How long a failure may take to show: the failing step's bound plus a margin no loaded machine breaks. */
const WITHIN_MS = 90_000;

let dns: Bind9Handle;
/** Serves wild.test too, but takes no updates: a resolver that never has the record. */
let stale: Bind9Handle;
let env: PebbleOnFreePorts;

before(async () => {
  dns = await startBind9({
    zones: [
      { name: 'wild.test', a: { 'wild.test': ['127.0.0.1'], '*.wild.test': ['127.0.0.1'] } },
      { name: 'ondemand.test', a: { [OTHER]: ['127.0.0.1'] } },
    ],
    keys: [KEY],
  });
  stale = await startBind9({ zones: [{ name: 'wild.test' }] });
  env = await startPebbleOnFreePorts({ dnsServer: dns.address });
});
after(async () => {
  await env?.pebble.stop();
  await stale?.stop();
  await dns?.stop();
});

type DnsSection = Record<string, unknown>;

const rfc2136 = (over: Record<string, unknown> = {}) => ({ server: dns.address, keyName: KEY.name, keyAlgorithm: KEY.algorithm, keySecret: KEY.secret, ...over });

/** The failure as the admin API shows it for `name`, once it has one (within WITHIN_MS). */
async function failureShown(adminPort: number, name: string): Promise<{ attempts: number; lastError: { step: string | null; error: string } }> {
  const deadline = Date.now() + WITHIN_MS;
  for (;;) {
    const res = await adminCall(adminPort, 'GET', `/v1/certificates/${encodeURIComponent(name)}`);
    assert.ok(res.status === 404 || res.status === 200, `GET /v1/certificates/${name}: ${res.status} ${res.body}`);
    const body = res.json as { attempts: number; lastError: { step: string | null; error: string } | null };
    if (res.status === 404 && body.attempts > 0 && body.lastError) return { attempts: body.attempts, lastError: body.lastError };
    assert.ok(Date.now() < deadline, `no failure shown for ${name} within ${WITHIN_MS} ms: ${res.status} ${res.body}`);
    await sleep(200);
  }
}

/**
 * Runs a gateway whose managed wildcard cannot be validated as `acmeDns` is set, and checks
 * the failure is bounded, logged and shown with `step` and `answered`, while everything else is served.
 */
async function failsCleanly(acmeDns: DnsSection, step: string, answered: RegExp, managedOrders: 'none' | 'some'): Promise<LogLine[]> {
  const { pebble, httpsPort, httpPort, root } = env;
  const ordersBefore = pebble.ordersPlaced();
  const { logger, lines } = capturingLogger('info');
  const gw = await startTestGateway({
    pebble,
    httpsPort,
    httpPort,
    logger,
    config: { certificates: [{ names: MANAGED }], onDemand: { allow: ['*.ondemand.test'] }, acme: { dns: acmeDns } },
  });
  try {
    for (const name of MANAGED) {
      const shown = await failureShown(gw.gateway.adminPort!, name);
      assert.equal(shown.lastError.step, step, `${name}: admin status names the step`);
      assert.match(shown.lastError.error, answered, `${name}: admin status says what the DNS answered`);
      assert.match(shown.lastError.error, /wild\.test/, 'the error names the domain');
    }
    // The failure is recorded in storage (what the admin API shows) before its error line is
    // written: give the line the same bound instead of expecting it in the same instant.
    const errorLine = () => lines.find((l) => l.level === 50 && l.domain === MANAGED[0] && l.step === step);
    for (const deadline = Date.now() + WITHIN_MS; !errorLine() && Date.now() < deadline; ) await sleep(50);
    const logged = errorLine();
    assert.ok(logged, `an error line for ${MANAGED[0]} with step ${step}:\n${lines.map((l) => JSON.stringify(l)).join('\n')}`);
    assert.match(JSON.stringify(logged.err), answered, 'the log line says what the DNS answered');

    // A DNS host that refuses our key or cannot be reached is found before the order: no
    // newOrder spent at the CA. A record that never propagates is only known after the order.
    const managedOrderCount = pebble.ordersPlaced() - ordersBefore;
    if (managedOrders === 'none') assert.equal(managedOrderCount, 0, 'no order placed for the managed certificate');
    else assert.ok(managedOrderCount >= 1, 'the order was placed before propagation failed');

    const fallback = await fallbackFingerprint(gw);
    for (const name of ['a.wild.test', 'wild.test']) {
      assert.equal((await peerCertificate(httpsPort, name)).fingerprint256, fallback, `${name}: the fallback`);
    }
    // An on-demand name validated by http-01 is unaffected (Pebble resolves it through bind9).
    const other = await httpsGet(OTHER, httpsPort, root);
    assert.notEqual(other.fingerprint256, fallback, `${OTHER} got its certificate`);
    assert.deepEqual(await dns.txt('_acme-challenge.wild.test'), [], 'no TXT record left behind');
    return lines;
  } finally {
    await gw.close();
  }
}

describe('managed wildcard: dns-01 failures at gateway level', () => {
  // The provider's check (a signed SOA query) runs before the order, so that is the step that fails.
  test('wrong TSIG secret: step check, bind9 answered NOTAUTH/BADSIG, no order placed', async () => {
    await failsCleanly({ provider: 'rfc2136', rfc2136: rfc2136({ keySecret: WRONG_SECRET }), resolvers: [dns.address], propagationTimeout: '30s' }, 'check', /BADSIG/, 'none');
  });

  test('DNS server down: step check, connection refused, no order placed', async () => {
    const down = `127.0.0.1:${await freePort()}`;
    await failsCleanly({ provider: 'rfc2136', rfc2136: rfc2136({ server: down }), resolvers: [dns.address], propagationTimeout: '30s' }, 'check', /ECONNREFUSED|refused/i, 'none');
  });

  test('propagation time-out: step propagation, what the resolver answered; the record is removed', async () => {
    await failsCleanly({ provider: 'rfc2136', rfc2136: rfc2136(), resolvers: [stale.address], propagationTimeout: '2s' }, 'propagation', /no TXT/, 'some');
  });
});
