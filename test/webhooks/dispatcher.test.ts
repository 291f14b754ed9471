// The webhook dispatcher against real file storage and a real HTTP receiver (which verifies every
// signature with its own code): the retry schedule with one webhook-id, failure once the delays
// run out, redirects not followed, one send per delivery when two dispatchers poll one storage,
// a message filed once, registry changes taken only where they were made.
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import fc from 'fast-check';
import { parse } from '../support/config.ts';
import { tmpDir } from '../support/tmp.ts';
import { startWebhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.ts';
import { FileStorage } from '../../src/storage/file/store.ts';
import { silentLogger } from '../../src/util/log.ts';
import { enqueueDelivery, listDeliveries, retryDelay } from '../../src/webhooks/deliveries.ts';
import { WebhookDispatcher } from '../../src/webhooks/dispatcher.ts';
import { fromRegistryChange, type WebhookMessage } from '../../src/webhooks/events.ts';
import type { RegistryChange } from '../../src/policy/registry.ts';
import type { CertificateEvent } from '../../src/issuance/events.ts';

const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';

async function setUp(t: TestContext, receiver: WebhookReceiver, hook: Record<string, unknown> = {}) {
  const dir = await tmpDir(t);
  const storage = await FileStorage.open(dir);
  t.after(() => storage.close());
  const webhooks = parse({ webhooks: [{ url: receiver.url, secret: SECRET, ...hook }] }).webhooks;
  const dispatcher = (pollMs = 100) => {
    const d = new WebhookDispatcher({ storage, logger: silentLogger(), webhooks, pollMs, timeoutMs: 2000 });
    t.after(() => d.close());
    return d;
  };
  return { dir, storage, webhooks, dispatcher };
}

async function receiverFor(t: TestContext): Promise<WebhookReceiver> {
  const receiver = await startWebhookReceiver(SECRET);
  t.after(() => receiver.close());
  return receiver;
}

const bound = (name: string, local = true): RegistryChange => ({
  type: 'domain-bound',
  name,
  local,
  created: true,
  binding: { name, enabled: true, createdAt: '2026-01-01T00:00:00.000Z', updatedAt: '2026-01-01T00:00:00.000Z' },
});

test('retry schedule: one first attempt, then one per delay in turn, then none (failed)', () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 0, max: 36_000_000 }), { maxLength: 20 }), (delays) => {
      for (let attempts = 1; attempts <= delays.length; attempts++) assert.equal(retryDelay(attempts, delays), delays[attempts - 1]);
      assert.equal(retryDelay(delays.length + 1, delays), undefined);
    }),
    { seed: 42, numRuns: 300 },
  );
});

test('a receiver answering 500 twice gets the event on the third try, same webhook-id, every attempt signed', async (t) => {
  const receiver = await receiverFor(t);
  receiver.answer = (_id, n) => (n <= 2 ? 500 : 204);
  const { storage, dispatcher } = await setUp(t, receiver, { retry: { delays: ['200ms', '200ms', '200ms'] } });
  const d = dispatcher(60_000); // no poll: the retries come from the dispatcher's own timers
  d.start();
  const events = { on: (l: (e: CertificateEvent) => void) => ((emit = l), () => undefined) };
  let emit: (e: CertificateEvent) => void = () => undefined;
  d.observe(events, { onChange: () => () => undefined });
  emit({ type: 'issuance-succeeded', domain: 'a.test', ca: 'pebble', notAfter: '2026-04-01T00:00:00.000Z', ms: 5, at: '2026-01-01T00:00:00.000Z' });
  const got = await receiver.waitFor((r) => r.length >= 3, 20_000, 'three attempts');
  assert.deepEqual(got.map((r) => r.status), [500, 500, 204]);
  assert.equal(new Set(got.map((r) => r.id)).size, 1, 'one webhook-id on every retry');
  assert.ok(got.every((r) => r.verified), 'every signature verifies');
  assert.deepEqual(got[0]!.payload, { type: 'issuance-succeeded', timestamp: '2026-01-01T00:00:00.000Z', data: { domain: 'a.test', ca: 'pebble', notAfter: '2026-04-01T00:00:00.000Z', ms: 5 } });
  await d.close();
  const { items } = await listDeliveries(storage, { status: 'delivered', limit: 10 });
  assert.equal(items.length, 1);
  assert.equal(items[0]!.attempts, 3);
  assert.equal(items[0]!.lastError?.status, 500);
});

test('out of retries: failed, listed with its attempts and last error; a redirect is not followed', async (t) => {
  const receiver = await receiverFor(t);
  receiver.answer = () => 302;
  const { storage, dispatcher } = await setUp(t, receiver, { retry: { delays: ['50ms', '50ms'] } });
  const d = dispatcher(60_000);
  d.start();
  await d.publish(fromRegistryChange(bound('b.test'), '2026-01-01T00:00:00.000Z', 'x'));
  await receiver.waitFor((r) => r.length >= 3, 20_000, 'three attempts');
  const deadline = Date.now() + 20_000;
  let failed = await listDeliveries(storage, { status: 'failed', limit: 10 });
  while (failed.items.length === 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    failed = await listDeliveries(storage, { status: 'failed', limit: 10 });
  }
  assert.equal(failed.items.length, 1);
  const [item] = failed.items;
  assert.equal(item!.attempts, 3);
  assert.equal(item!.domain, 'b.test');
  assert.match(item!.lastError!.error, /answered 302 \(redirects are not followed/);
  assert.equal((await listDeliveries(storage, { status: 'pending', limit: 10 })).items.length, 0);
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(receiver.received.length, 3, 'no attempt after the last delay');
});

test('two dispatchers polling one storage send each delivery once', async (t) => {
  const receiver = await receiverFor(t);
  const { dir, storage, webhooks } = await setUp(t, receiver);
  const other = await FileStorage.open(dir);
  t.after(() => other.close());
  const messages: WebhookMessage[] = Array.from({ length: 30 }, (_, i) => fromRegistryChange(bound(`n${i}.test`), '2026-01-01T00:00:00.000Z', 'x'));
  for (const m of messages) assert.ok(await enqueueDelivery(storage, m, receiver.url, Date.now()));
  const a = new WebhookDispatcher({ storage, logger: silentLogger(), webhooks, pollMs: 20 });
  const b = new WebhookDispatcher({ storage: other, logger: silentLogger(), webhooks, pollMs: 20 });
  t.after(() => Promise.all([a.close(), b.close()]));
  a.start();
  b.start();
  await Promise.all([a.poll(), b.poll(), a.poll(), b.poll()]);
  await receiver.waitFor((r) => r.length >= 30, 20_000, '30 deliveries');
  await new Promise((resolve) => setTimeout(resolve, 500)); // settle: a duplicate would arrive now
  const ids = receiver.received.map((r) => r.id);
  assert.equal(ids.length, 30, 'each delivery sent once');
  assert.deepEqual(new Set(ids), new Set(messages.map((m) => m.id)));
});

test('a message is filed once; a registry change heard from another instance is not filed here', async (t) => {
  const receiver = await receiverFor(t);
  const { storage, dispatcher } = await setUp(t, receiver);
  const message = fromRegistryChange(bound('c.test'), '2026-01-01T00:00:00.000Z', 'x');
  assert.equal(await enqueueDelivery(storage, message, receiver.url, Date.now()), true);
  assert.equal(await enqueueDelivery(storage, message, receiver.url, Date.now()), false);
  const d = dispatcher(60_000);
  let change: (c: RegistryChange) => void = () => undefined;
  d.observe({ on: () => () => undefined }, { onChange: (l) => ((change = l), () => undefined) });
  change(bound('remote.test', false));
  change(bound('local.test', true));
  await d.close();
  const domains = (await listDeliveries(storage, { limit: 10 })).items.map((i) => i.domain).sort();
  assert.deepEqual(domains, ['c.test', 'local.test']);
});
