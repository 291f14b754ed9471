// Issue 17, items 1-2 (hostname status, ownership verification), against real Pebble and
// pebble-challtestsrv's DNS, which both the gateway's checks and Pebble's validator ask:
//   - bound while its A record points elsewhere: pending, with a sentence naming the record;
//     record fixed, ?check=true, one handshake: active (no shortened negative caches: the check
//     itself must make the fix count)
//   - a failed issuance: failed with nextRetry; ?status=failed lists only it
//   - the legacy PUT body `status: disabled` still switches the binding off
//   - ownership on: pending with the TXT sentence and no order at the CA; TXT added,
//     ?check=true: verified, and a handshake issues
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Hostname } from '../../src/admin/hostname-status.ts';
import { adminCall } from '../support/admin.ts';
import { httpsGet, peerCertificate } from '../support/clients.ts';
import { fallbackFingerprint as fallbackOf, startTestGateway, type TestGateway } from '../support/gateway.ts';
import { startPebbleOnFreePorts, type MockDns, type PebbleHandle } from '../support/pebble.ts';
import { echoHandler, startUpstream, type FakeUpstream } from '../support/upstream.ts';

/** One gateway on its own Pebble, with the registry as policy and the DNS check on challtestsrv. */
interface Stack {
  pebble: PebbleHandle;
  dns: MockDns;
  gw: TestGateway;
  httpsPort: number;
  root: string;
  fallback: string;
  admin: (method: string, path: string, body?: unknown) => ReturnType<typeof adminCall>;
}

// The platform's edge host name (challtestsrv answers 127.0.0.1 for it) and a second, IP target
// where nothing listens: a name pointing there passes the DNS check but fails validation.
const edge = `edge-${process.pid}.platform.test`;
const DEAD_TARGET = '127.0.0.2';

async function startStack(upstream: FakeUpstream, onDemand: Record<string, unknown>): Promise<Stack> {
  const { pebble, httpsPort, httpPort, root, dns } = await startPebbleOnFreePorts();
  const gw = await startTestGateway({
    pebble,
    httpsPort,
    httpPort,
    config: {
      onDemand: { registry: true, dns: { targets: [edge, DEAD_TARGET], resolvers: [pebble.dnsAddress], timeout: '1s' }, ...onDemand },
      acme: { challenges: ['http-01'] },
      proxy: { upstream: upstream.origin },
    },
  });
  const port = gw.gateway.adminPort!;
  return { pebble, dns, gw, httpsPort, root, fallback: await fallbackOf(gw), admin: (method, path, body) => adminCall(port, method, path, body === undefined ? {} : { body }) };
}

async function hostname(stack: Stack, name: string, check = false): Promise<Hostname> {
  const res = await stack.admin('GET', `/v1/domains/${name}${check ? '?check=true' : ''}`);
  assert.equal(res.status, 200, res.body);
  return res.json as Hostname;
}

describe('hostname status: pending with the record to fix, active after ?check=true; failed; filter; legacy switch', () => {
  let stack: Stack;
  let upstream: FakeUpstream;

  before(async () => {
    upstream = await startUpstream(echoHandler('app'));
    stack = await startStack(upstream, {});
  });

  after(async () => {
    await stack?.gw.close();
    await stack?.pebble.stop();
    await upstream?.close();
  });

  test('A record elsewhere: pending, a sentence naming the address and the records; fixed + ?check=true: a handshake makes it active', async () => {
    const { dns, pebble, admin } = stack;
    const name = 'blog.customers.test';
    await dns.setA(name, ['203.0.113.9']);
    const orders = pebble.ordersPlaced();

    const put = await admin('PUT', `/v1/domains/${name}`, {});
    assert.equal(put.status, 201, put.body);
    const bound = put.json as Hostname;
    assert.equal(bound.status, 'pending');
    assert.equal(bound.enabled, true);
    assert.deepEqual(bound.verification.dns, { ok: false, resolved: ['203.0.113.9'], expected: [edge, DEAD_TARGET], reason: bound.verification.dns?.reason ?? null });
    assert.ok(bound.errors.includes(`${name} points at 203.0.113.9; create a CNAME to ${edge} (or an A record to ${DEAD_TARGET}).`), bound.errors.join(' | '));
    // A plain GET shows the same (the results of the check at bind), and a handshake gets the fallback, no order.
    assert.deepEqual((await hostname(stack, name)).errors, bound.errors);
    assert.equal((await peerCertificate(stack.httpsPort, name)).fingerprint256, stack.fallback);
    assert.equal(pebble.ordersPlaced(), orders, 'no order while DNS points elsewhere');

    await dns.setA(name, ['127.0.0.1']);
    const checked = await hostname(stack, name, true);
    assert.equal(checked.verification.dns?.ok, true, JSON.stringify(checked.verification));
    assert.deepEqual(checked.errors, []);
    assert.equal(checked.status, 'pending', 'no certificate yet');

    const res = await httpsGet(name, stack.httpsPort, stack.root);
    assert.equal(res.status, 200);
    assert.notEqual(res.fingerprint256, stack.fallback);
    const active = await hostname(stack, name);
    assert.equal(active.status, 'active');
    assert.ok(active.verification.certificate && Date.parse(active.verification.certificate.notAfter) > Date.now());
    assert.match(active.verification.certificate.issuer ?? '', /Pebble/);
    assert.equal(pebble.ordersPlaced(), orders + 1);
  });

  test('a failed issuance: failed with lastError and nextRetry; ?status=failed lists it and no other', async () => {
    const { dns, admin } = stack;
    const name = 'broken.customers.test';
    await dns.setA(name, [DEAD_TARGET]);
    assert.equal((await admin('PUT', `/v1/domains/${name}`, {})).status, 201);
    assert.equal((await admin('PUT', '/v1/domains/waiting.customers.test', {})).status, 201);
    const issued = await admin('POST', `/v1/domains/${name}/issue`);
    assert.equal(issued.status, 502, issued.body);

    const failed = await hostname(stack, name);
    assert.equal(failed.status, 'failed');
    assert.ok(failed.verification.nextRetry && Date.parse(failed.verification.nextRetry) > Date.parse(failed.verification.lastError!.at), JSON.stringify(failed.verification));
    assert.ok(failed.verification.lastError?.step, 'the step that failed');
    assert.ok(failed.errors.some((e) => e.includes('failed at step') && e.includes('next try after')), failed.errors.join(' | '));

    const list = await admin('GET', '/v1/domains?status=failed&limit=10');
    assert.equal(list.status, 200, list.body);
    const page = list.json as { items: Hostname[]; nextCursor: string | null };
    assert.deepEqual(page.items.map((h) => h.name), [name]);
    assert.equal(page.nextCursor, null);
    const pending = (await admin('GET', '/v1/domains?status=pending')).json as { items: Hostname[] };
    assert.ok(pending.items.some((h) => h.name === 'waiting.customers.test'));
    assert.ok(pending.items.every((h) => h.status === 'pending'));
    assert.equal((await admin('GET', '/v1/domains?status=bogus')).status, 400);
  });

  test('PUT with the legacy status: disabled still switches it off (enabled: false, status disabled); status: active back on', async () => {
    const { admin } = stack;
    const name = 'blog.customers.test';
    const off = await admin('PUT', `/v1/domains/${name}`, { status: 'disabled' });
    assert.equal(off.status, 200, off.body);
    assert.equal((off.json as Hostname).enabled, false);
    assert.equal((await hostname(stack, name)).status, 'disabled');
    assert.equal((await peerCertificate(stack.httpsPort, name)).fingerprint256, stack.fallback, 'not served while disabled');
    const on = await admin('PUT', `/v1/domains/${name}`, { status: 'active' });
    assert.equal((on.json as Hostname).enabled, true);
    assert.equal((await hostname(stack, name)).status, 'active');
    assert.equal((await admin('PUT', `/v1/domains/${name}`, { enabled: false, status: 'active' })).status, 400, 'contradicting switches');
  });
});

describe('ownership verification: no order until the TXT record is seen', () => {
  let stack: Stack;
  let upstream: FakeUpstream;

  before(async () => {
    upstream = await startUpstream(echoHandler('app'));
    stack = await startStack(upstream, { ownership: { method: 'txt', prefix: '_certgate' } });
  });

  after(async () => {
    await stack?.gw.close();
    await stack?.pebble.stop();
    await upstream?.close();
  });

  test('bound: pending with the TXT sentence, no order; TXT added + ?check=true: verified, a handshake issues', async () => {
    const { dns, pebble, admin } = stack;
    const name = 'shop.owned.test';
    const orders = pebble.ordersPlaced();
    const put = await admin('PUT', `/v1/domains/${name}`, {});
    assert.equal(put.status, 201, put.body);
    const bound = put.json as Hostname;
    const ownership = bound.verification.ownership!;
    assert.equal(ownership.record.name, `_certgate.${name}`);
    assert.equal(ownership.verified, false);
    assert.equal(bound.status, 'pending');
    assert.ok(bound.errors.some((e) => e.startsWith(`create TXT _certgate.${name} with value ${ownership.record.value} `)), bound.errors.join(' | '));

    assert.equal((await peerCertificate(stack.httpsPort, name)).fingerprint256, stack.fallback);
    assert.equal((await admin('POST', `/v1/domains/${name}/issue`)).status, 403);
    assert.equal(pebble.ordersPlaced(), orders, 'no order at the CA before ownership is proven');

    // A wrong value is not enough.
    await dns.setTxt(`_certgate.${name}`, 'someone-else');
    const wrong = await hostname(stack, name, true);
    assert.equal(wrong.verification.ownership?.verified, false);
    assert.deepEqual(wrong.verification.ownership?.found, ['someone-else']);

    await dns.setTxt(`_certgate.${name}`, ownership.record.value);
    const verified = await hostname(stack, name, true);
    assert.equal(verified.verification.ownership?.verified, true, JSON.stringify(verified.verification));
    assert.deepEqual(verified.errors, []);
    const res = await httpsGet(name, stack.httpsPort, stack.root);
    assert.equal(res.status, 200);
    assert.notEqual(res.fingerprint256, stack.fallback);
    assert.equal((await hostname(stack, name)).status, 'active');
    assert.equal(pebble.ordersPlaced(), orders + 1);

    // Re-binding keeps the token and the proof.
    const again = (await admin('PUT', `/v1/domains/${name}`, { label: 'shop' })).json as Hostname;
    assert.equal(again.verification.ownership?.record.value, ownership.record.value);
    assert.equal(again.verification.ownership?.verified, true);
  });
});
