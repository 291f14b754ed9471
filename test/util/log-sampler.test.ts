// LogSampler: at most N lines per interval, and the next line let through says how many were left out.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LogSampler, truncateForLog } from '../../src/util/log-sampler.ts';

test('N lines per interval; the first line of the next interval carries the count left out', () => {
  let now = 1_000;
  const sampler = new LogSampler({ maxPerInterval: 3, intervalMs: 10_000, now: () => now });
  const first = Array.from({ length: 10 }, () => sampler.sample());
  assert.deepEqual(first, [0, 0, 0, undefined, undefined, undefined, undefined, undefined, undefined, undefined]);
  now += 9_999;
  assert.equal(sampler.sample(), undefined, 'still the same interval');
  now += 1;
  assert.equal(sampler.sample(), 8, 'the 8 left out are reported once');
  assert.equal(sampler.sample(), 0);
});

test('truncateForLog cuts long attacker-chosen strings and marks the cut', () => {
  assert.equal(truncateForLog(undefined, 5), undefined);
  assert.equal(truncateForLog('short', 5), 'short');
  assert.equal(truncateForLog('longer text', 6), 'longer…');
});
