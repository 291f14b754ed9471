// What a reload changes (src/config/changes.ts): changed leaf keys split into live ones and
// ones that need a restart, and the merge a reloaded process runs.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { configChanges, isLive, LIVE_KEYS, withLiveChanges } from '../../src/config/changes.ts';
import { parseConfig } from '../../src/config/load.ts';
import { parse } from '../support/config.ts';

const base = {
  listen: { https: '127.0.0.1:8443', http: '127.0.0.1:8080' },
  proxy: { upstream: 'http://127.0.0.1:9000', routes: [{ hosts: ['a.example'], upstream: 'http://127.0.0.1:9001' }] },
  onDemand: { allow: ['*.customers.example'] },
  storage: { file: { path: '/var/lib/certgate' } },
};

test('an unchanged config has no changes; where it came from is not a change', () => {
  const elsewhere = parseConfig(base, { file: '/elsewhere/certgate.yaml', baseDir: '/elsewhere' });
  assert.deepEqual(configChanges(parse(base), elsewhere), { live: [], restart: [] });
});

test('live keys and restart keys are told apart, each changed leaf named once', () => {
  const next = parse({
    ...base,
    listen: { ...base.listen, http: '127.0.0.1:8081' },
    proxy: { ...base.proxy, routes: [{ hosts: ['a.example'], upstream: 'http://127.0.0.1:9002' }] },
    onDemand: { allow: ['x.example'], ask: 'http://127.0.0.1:7000/ask', limits: { global: false } },
    log: { level: 'debug' },
    shutdownTimeout: '5s',
    workers: 3,
  });
  assert.deepEqual(configChanges(parse(base), next), {
    live: ['log.level', 'onDemand.allow', 'onDemand.ask', 'onDemand.limits.global', 'proxy.routes', 'shutdownTimeout'],
    restart: ['listen.http.port', 'workers'],
  });
});

test('shutdownTimeout defaults to 30 s and takes a duration', () => {
  assert.equal(parse({}).shutdownTimeout, 30_000);
  assert.equal(parse({ shutdownTimeout: '2s' }).shutdownTimeout, 2000);
});

test('isLive: a live key and the keys below it, nothing beside it', () => {
  assert.equal(isLive('onDemand.limits.perClient.rate'), true);
  assert.equal(isLive('onDemand.limits.perClient'), true);
  assert.equal(isLive('onDemand.limits.unknownNameCache'), false);
  assert.equal(isLive('proxy.upstreamTimeout'), false);
});

// Arbitrary edits to live and restart-only keys: the merge takes exactly the live ones.
const liveEdit = fc.record({
  allow: fc.array(fc.constantFrom('a.example', '*.b.example', 'c.example'), { maxLength: 3 }),
  ask: fc.option(fc.constantFrom('http://127.0.0.1:7000/ask', 'http://127.0.0.1:7001/ask'), { nil: undefined }),
  upstream: fc.option(fc.constantFrom('http://127.0.0.1:9000', 'http://127.0.0.1:9100'), { nil: undefined }),
  level: fc.constantFrom('info', 'debug', 'warn'),
  global: fc.oneof(fc.constant(false as const), fc.record({ rate: fc.integer({ min: 1, max: 50 }), burst: fc.integer({ min: 1, max: 500 }) })),
  shutdownTimeout: fc.integer({ min: 1, max: 60_000 }),
});
const restartEdit = fc.record({
  http: fc.constantFrom('127.0.0.1:8080', '127.0.0.1:8081'),
  cacheSize: fc.integer({ min: 1, max: 100_000 }),
  concurrency: fc.integer({ min: 1, max: 100 }),
});
const build = (live: Record<string, unknown>, restart: Record<string, unknown>) =>
  parse({
    listen: { https: '127.0.0.1:8443', http: restart.http },
    tls: { cacheSize: restart.cacheSize },
    renewal: { concurrency: restart.concurrency },
    onDemand: { allow: live.allow, ...(live.ask ? { ask: live.ask } : {}), limits: { global: live.global } },
    proxy: { ...(live.upstream ? { upstream: live.upstream } : {}) },
    log: { level: live.level },
    shutdownTimeout: live.shutdownTimeout,
  });

test('property: the merged config has every live key of the new one and every other key of the running one', () => {
  fc.assert(
    fc.property(liveEdit, restartEdit, liveEdit, restartEdit, (live1, restart1, live2, restart2) => {
      const running = build(live1, restart1);
      const next = build(live2, restart2);
      const merged = withLiveChanges(running, next);
      const changes = configChanges(running, next);
      // Nothing live is left to apply, and what needs a restart is still reported.
      assert.deepEqual(configChanges(merged, next), { live: [], restart: changes.restart });
      assert.deepEqual(configChanges(running, merged), { live: changes.live, restart: [] });
      assert.ok(changes.live.every(isLive) && changes.restart.every((k) => !isLive(k)));
      assert.deepEqual(running, build(live1, restart1), 'the running config is not changed');
    }),
    { seed: 42, numRuns: 300 },
  );
});

test('LIVE_KEYS are all keys of the schema', () => {
  const config = parse({ onDemand: { ask: 'http://127.0.0.1:7000/ask' }, proxy: { upstream: 'http://127.0.0.1:9000' } });
  for (const key of LIVE_KEYS) {
    const value = key.split('.').reduce<unknown>((at, part) => (at as Record<string, unknown> | undefined)?.[part], config);
    assert.notEqual(value, undefined, key);
  }
});
