// The Bloom filters (src/util/bloom.ts): never a false negative for a name added, and a false
// positive rate near the one they were sized for, both at the sized count and after growing far
// past it. Property tests use fast-check with a fixed seed (a failure prints the counterexample).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { BloomFilter, GrowingBloomFilter } from '../../src/util/bloom.ts';

/** Host-name-like strings (what the filter holds): labels of [a-z0-9-], dots between. */
const hostName = fc
  .array(fc.stringMatching(/^[a-z0-9][a-z0-9-]{0,20}$/), { minLength: 1, maxLength: 5 })
  .map((labels) => labels.join('.'));

/** The share of `probes` (none of them added) the filter says it may hold. */
function falsePositiveRate(filter: { has(v: string): boolean }, probes: string[]): number {
  return probes.filter((p) => filter.has(p)).length / probes.length;
}

describe('BloomFilter', () => {
  test('every name added is found (no false negatives), whatever the names and the sizing', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.oneof(hostName, fc.string({ maxLength: 300 })), { maxLength: 400 }), fc.integer({ min: 1, max: 500 }), (names, capacity) => {
        const fixed = new BloomFilter(capacity, 0.01);
        const growing = new GrowingBloomFilter(capacity, 0.01);
        for (const n of names) {
          fixed.add(n);
          growing.add(n);
        }
        for (const n of names) {
          assert.ok(fixed.has(n), `BloomFilter lost ${JSON.stringify(n)}`);
          assert.ok(growing.has(n), `GrowingBloomFilter lost ${JSON.stringify(n)}`);
        }
      }),
      { seed: 42, numRuns: 300 },
    );
  });

  test('at the count it was sized for, false positives stay near the rate asked for', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1_000_000 }), (salt) => {
        const filter = new BloomFilter(5_000, 0.01);
        for (let i = 0; i < 5_000; i++) filter.add(`n${i}-${salt}.tenant.example`);
        const probes = Array.from({ length: 20_000 }, (_, i) => `r${i}-${salt}.flood.example`);
        const rate = falsePositiveRate(filter, probes);
        // 1% expected; 20,000 probes put 3 standard deviations at ±0.2%.
        assert.ok(rate < 0.016, `false positive rate ${rate} at the sized count (asked 0.01)`);
      }),
      { seed: 42, numRuns: 5 },
    );
  });

  test('grown to 40× its first size, the rate stays below twice the one asked for, at ~2 bytes a name', () => {
    const filter = new GrowingBloomFilter(1_024, 0.01);
    for (let i = 0; i < 40_000; i++) filter.add(`customer-${i}.saas.example`);
    for (let i = 0; i < 40_000; i += 97) assert.ok(filter.has(`customer-${i}.saas.example`));
    const rate = falsePositiveRate(filter, Array.from({ length: 20_000 }, (_, i) => `x${i}.flood.example`));
    assert.ok(rate < 0.02, `false positive rate ${rate} after growing (asked 0.01)`);
    assert.ok(filter.bytes / 40_000 < 4, `${filter.bytes} bytes for 40,000 names`);
  });

  test('refuses a false-positive rate outside (0, 1)', () => {
    assert.throws(() => new BloomFilter(10, 0), RangeError);
    assert.throws(() => new BloomFilter(10, 1), RangeError);
  });
});
