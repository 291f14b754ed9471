// The domain registry: bindings in storage (file and Redis), memory kept current through the
// cluster bus, and its place in the policy rule (any source may allow; a source that knows the
// name and says no denies).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { silentLogger } from '../../src/util/log.ts';
import { OnDemandPolicy } from '../../src/policy/policy.ts';
import { bindingInputSchema } from '../../src/admin/bindings.ts';
import { DomainRegistry, InvalidDomainError, registryKey, type RegistryChange } from '../../src/policy/registry.ts';
import { LocalBus } from '../../src/storage/bus.ts';
import { FileStorage } from '../../src/storage/file/store.ts';
import { RedisStorage } from '../../src/storage/redis/store.ts';
import { startRedis, type RedisHandle } from '../support/redis.ts';
import { tmpDir } from '../support/tmp.ts';
import { onDemandSection } from '../support/config.ts';

const body = (input: Record<string, unknown> = {}) => bindingInputSchema.parse(input);

function policyWith(registry: DomainRegistry | undefined, allow: string[] = []): OnDemandPolicy {
  return new OnDemandPolicy(onDemandSection({ allow, askTimeout: 1000, askCacheTtl: 1000, askDenyCacheTtl: 1000 }), { logger: silentLogger(), ...(registry ? { registry } : {}) });
}

describe('domain registry on file storage', () => {
  test('put, get, replace keeps createdAt, remove; names are normalised; stored readable', async (t) => {
    const storage = await FileStorage.open(await tmpDir(t, 'certgate-registry-'));
    const registry = new DomainRegistry({ storage, logger: silentLogger() });
    const changes: RegistryChange[] = [];
    registry.onChange((c) => changes.push(c));

    const first = await registry.put('Shop.Example.COM.', body({ upstream: 'http://127.0.0.1:8081/', tenant: 't1' }));
    assert.equal(first.created, true);
    assert.equal(first.binding.name, 'shop.example.com');
    assert.equal(first.binding.upstream, 'http://127.0.0.1:8081');
    assert.equal(first.binding.enabled, true);
    const stored = JSON.parse((await storage.get(registryKey('shop.example.com')))!.toString()) as Record<string, unknown>;
    assert.equal(stored.tenant, 't1');

    await sleep(5);
    const second = await registry.put('shop.example.com', body({ label: 'main' }));
    assert.equal(second.created, false);
    assert.equal(second.binding.createdAt, first.binding.createdAt);
    assert.notEqual(second.binding.updatedAt, first.binding.updatedAt);
    assert.equal(second.binding.upstream, undefined, 'replace, not merge');

    // A fresh instance on the same storage reads it.
    const other = new DomainRegistry({ storage, logger: silentLogger() });
    assert.equal((await other.get('shop.example.com'))?.label, 'main');

    assert.equal(await registry.remove('shop.example.com'), true);
    assert.equal(await registry.remove('shop.example.com'), false);
    assert.equal(await registry.get('shop.example.com'), null);
    assert.deepEqual(changes.map((c) => c.type), ['domain-bound', 'domain-bound', 'domain-unbound', 'domain-unbound']);

    await assert.rejects(registry.put('127.0.0.1', body()), InvalidDomainError);
    await assert.rejects(registry.put('localhost', body()), InvalidDomainError);
    assert.equal((await registry.put('bücher.example', body())).binding.name, 'xn--bcher-kva.example');
  });

  test('list pages in name order with a cursor', async (t) => {
    const storage = await FileStorage.open(await tmpDir(t, 'certgate-registry-'));
    const registry = new DomainRegistry({ storage, logger: silentLogger() });
    const names = Array.from({ length: 25 }, (_, i) => `d${String(i).padStart(2, '0')}.example.com`);
    for (const name of names) await registry.put(name, body());
    const seen: string[] = [];
    let cursor: string | undefined;
    for (;;) {
      const page = await registry.list({ ...(cursor ? { cursor } : {}), limit: 10 });
      seen.push(...page.items.map((b) => b.name));
      if (page.nextCursor === null) break;
      cursor = page.nextCursor;
    }
    assert.deepEqual(seen, names);
  });

  test('route lookup: active binding with upstream only; memory answers synchronously once loaded', async (t) => {
    const storage = await FileStorage.open(await tmpDir(t, 'certgate-registry-'));
    const registry = new DomainRegistry({ storage, logger: silentLogger() });
    await registry.put('routed.example.com', body({ upstream: 'http://127.0.0.1:9999' }));
    await registry.put('off.example.com', body({ upstream: 'http://127.0.0.1:9999', status: 'disabled' }));
    assert.equal((registry.lookup('routed.example.com') as { origin: string } | undefined)?.origin, 'http://127.0.0.1:9999');
    assert.equal(registry.lookup('off.example.com'), undefined);
    assert.equal(registry.lookup('127.0.0.1'), undefined);
    const cold = new DomainRegistry({ storage, logger: silentLogger() });
    const pending = cold.lookup('routed.example.com');
    assert.ok(pending instanceof Promise, 'not in memory yet: a promise');
    assert.equal((await pending)?.origin, 'http://127.0.0.1:9999');
    assert.equal((cold.lookup('routed.example.com') as { origin: string } | undefined)?.origin, 'http://127.0.0.1:9999');
  });
});

describe('policy: registry combined with allow', () => {
  test('active allows, disabled denies even when allow matches, unknown falls through to allow', async (t) => {
    const storage = await FileStorage.open(await tmpDir(t, 'certgate-registry-'));
    const registry = new DomainRegistry({ storage, logger: silentLogger() });
    await registry.put('bound.customers.test', body());
    await registry.put('banned.customers.test', body({ status: 'disabled' }));
    await registry.put('bound.elsewhere.test', body());

    const both = policyWith(registry, ['*.customers.test']);
    assert.deepEqual(await both.decide('bound.customers.test'), { allowed: true, source: 'registry' });
    assert.equal((await both.decide('banned.customers.test')).allowed, false, 'a known "no" beats allow');
    assert.deepEqual(await both.decide('other.customers.test'), { allowed: true, source: 'allow' });
    assert.deepEqual(await both.decide('bound.elsewhere.test'), { allowed: true, source: 'registry' });
    assert.equal((await both.decide('stranger.test')).allowed, false);

    const registryOnly = policyWith(registry);
    assert.equal((await registryOnly.decide('other.customers.test')).allowed, false, 'unbound: denied');
    const decision = await registryOnly.decide('nobody.test');
    assert.ok(!decision.allowed && /not bound/.test(decision.reason));

    // Without the registry as a source, bindings do not approve anything.
    assert.equal((await policyWith(undefined).decide('bound.customers.test')).allowed, false);
  });
});

describe('domain registry on Redis: instances hear each other', () => {
  let redis: RedisHandle;
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    await redis?.dispose();
  });

  // The bus delivers in milliseconds (the product says "within a second"); the waits allow 10 s,
  // still far below the 30 s for which B would otherwise keep its "not bound" answer.
  test('a binding made on A is seen (and routed) by B through the bus, long before its "not bound" entry expires; unbind likewise', { timeout: 60_000 }, async () => {
    const a = await RedisStorage.connect({ url: redis.url, prefix: 'reg:', logger: silentLogger() });
    const b = await RedisStorage.connect({ url: redis.url, prefix: 'reg:', logger: silentLogger() });
    const ra = new DomainRegistry({ storage: a, logger: silentLogger() });
    const rb = new DomainRegistry({ storage: b, logger: silentLogger() });
    try {
      await ra.attachBus(a);
      await rb.attachBus(b);
      // B remembers "not bound" first (the 30 s negative entry must be replaced by the bus).
      assert.equal(await rb.get('live.example.com'), null);
      const heard: RegistryChange[] = [];
      rb.onChange((c) => heard.push(c));

      await ra.put('live.example.com', body({ upstream: 'http://127.0.0.1:7000' }));
      const deadline = Date.now() + 10_000;
      while (heard.length === 0 && Date.now() < deadline) await sleep(10);
      assert.equal(heard[0]?.type, 'domain-bound');
      assert.equal((rb.lookup('live.example.com') as { origin: string } | undefined)?.origin, 'http://127.0.0.1:7000');

      await ra.remove('live.example.com');
      const deadline2 = Date.now() + 10_000;
      while (heard.length < 2 && Date.now() < deadline2) await sleep(10);
      assert.equal(heard[1]?.type, 'domain-unbound');
      assert.equal(rb.lookup('live.example.com'), undefined);
      assert.equal(await rb.get('live.example.com'), null);

      // A fresh local-bus registry never gets Redis messages: shows the bus is what carried them.
      const lonely = new DomainRegistry({ storage: b, logger: silentLogger() });
      await lonely.attachBus(new LocalBus());
      assert.equal(await lonely.get('live.example.com'), null);
    } finally {
      await ra.close();
      await rb.close();
      await a.close();
      await b.close();
    }
  });
});

describe('wildcard bindings (DCV delegation)', () => {
  test('*.x normalises; covers exactly one label below x while active', async (t) => {
    const storage = await FileStorage.open(await tmpDir(t, 'certgate-registry-'));
    const registry = new DomainRegistry({ storage, logger: silentLogger() });
    assert.equal(DomainRegistry.normalize('*.Alice.COM'), '*.alice.com');
    assert.throws(() => DomainRegistry.normalize('*.*.alice.com'), InvalidDomainError);
    await registry.put('*.alice.com', { enabled: true });
    assert.equal(await registry.wildcardCovering('x.alice.com'), '*.alice.com');
    assert.equal(await registry.wildcardCovering('x.y.alice.com'), undefined);
    assert.equal(await registry.wildcardCovering('alice.com'), undefined);
    await registry.put('*.alice.com', { enabled: false });
    assert.equal(await registry.wildcardCovering('x.alice.com'), undefined);
  });
});
