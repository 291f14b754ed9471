// Token buckets and the issuance limits built on them, with explicit clocks (no sleeping).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { IssuanceLimits } from '../../src/issuance/limits.ts';
import { silentLogger } from '../../src/util/log.ts';
import { KeyedTokenBuckets, TokenBucket } from '../../src/util/ratelimit.ts';
import { capturingLogger } from '../support/log-lines.ts';

describe('token buckets', () => {
  test('a bucket starts full, refills at rate per second, never above burst', () => {
    const b = new TokenBucket({ rate: 2, burst: 3 }, 0);
    assert.deepEqual([b.take(0), b.take(0), b.take(0), b.take(0)], [true, true, true, false]);
    assert.equal(b.take(400), false, '0.8 tokens after 400 ms');
    assert.equal(b.take(500), true, '1 token after 500 ms');
    assert.equal(b.remaining(60_000), 3, 'capped at burst');
  });

  test('keyed buckets are independent per key and bounded in number', () => {
    const k = new KeyedTokenBuckets({ rate: 1, burst: 1 }, 100);
    assert.equal(k.take('a', 0), true);
    assert.equal(k.take('a', 0), false);
    assert.equal(k.take('b', 0), true);
    for (let i = 0; i < 1000; i++) k.take(`10.0.${i >> 8}.${i & 255}`, 0);
    assert.equal(k.size, 100);
  });
});

describe('IssuanceLimits', () => {
  test('per-client before global; a refused client takes nothing from the global budget', () => {
    const seen: string[] = [];
    const limits = new IssuanceLimits({ perClient: { rate: 1, burst: 2 }, global: { rate: 1, burst: 3 }, unknownNameCache: 10 }, { logger: silentLogger(), onLimited: (s) => seen.push(s) });
    assert.equal(limits.admit('a.test', '192.0.2.1', 0).ok, true);
    assert.equal(limits.admit('b.test', '192.0.2.1', 0).ok, true);
    const refused = limits.admit('c.test', '192.0.2.1', 0);
    assert.deepEqual(refused.ok ? null : refused.scope, 'client');
    assert.deepEqual(limits.budgets(0), [{ limit: 'issuance-global', remaining: 1 }]);
    assert.equal(limits.admit('d.test', '192.0.2.2', 0).ok, true);
    const global = limits.admit('e.test', '192.0.2.3', 0);
    assert.deepEqual(global.ok ? null : global.scope, 'global');
    assert.deepEqual(seen, ['client', 'global']);
  });

  test('false turns a limit off', () => {
    const limits = new IssuanceLimits({ perClient: false, global: false, unknownNameCache: 10 }, { logger: silentLogger() });
    for (let i = 0; i < 1000; i++) assert.equal(limits.admit(`n${i}.test`, '192.0.2.1', 0).ok, true);
    assert.deepEqual(limits.budgets(), []);
  });

  test('rejections are logged at most once per interval, with the count since the last line', () => {
    const { logger, lines } = capturingLogger('info');
    const limits = new IssuanceLimits({ perClient: { rate: 0.001, burst: 1 }, global: false, unknownNameCache: 10 }, { logger, logIntervalMs: 10_000 });
    limits.admit('first.test', '192.0.2.1', 0);
    for (let i = 0; i < 500; i++) limits.admit(`n${i}.test`, '192.0.2.1', 1 + i);
    limits.admit('later.test', '192.0.2.1', 20_000);
    assert.equal(lines.length, 2);
    assert.equal(lines[0]!.domain, 'n0.test');
    assert.equal(lines[0]!.step, 'rate-limit');
    assert.deepEqual(lines[1]!.limitedSinceLastLine, { client: 500, global: 0 });
  });
});
