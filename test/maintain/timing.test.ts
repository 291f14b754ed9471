// Renewal timing (fraction, half-life under 10 days, per-name jitter) and the hour buckets of the
// index. (ARI cert IDs and window picks: test/acme/plumbing/ari.test.ts.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bucketsBetween, hourBucket } from '../../src/issuance/renewal-index.ts';
import { renewalBackoffMs } from '../../src/maintain/scheduler.ts';
import { dueTime, renewalTime } from '../../src/maintain/timing.ts';
import { unitHash } from '../../src/util/unit-hash.ts';

const DAY = 86_400_000;

test('timing: 90-day certificate is due when a third remains; under 10 days at half-life', () => {
  const nb = Date.parse('2026-01-01T00:00:00Z');
  assert.equal(dueTime(nb, nb + 90 * DAY, 1 / 3), nb + 60 * DAY);
  assert.equal(dueTime(nb, nb + 90 * DAY, 0.5), nb + 45 * DAY);
  assert.equal(dueTime(nb, nb + 6 * DAY, 1 / 3), nb + 3 * DAY, 'short-lived: half-life, whatever the fraction');
  assert.equal(dueTime(nb, nb + 60_000, 0.33), nb + 30_000);
});

test('timing: jitter is deterministic per name, inside [due - window, due], and spreads names', () => {
  const nb = Date.parse('2026-01-01T00:00:00Z');
  const na = nb + 90 * DAY;
  const due = dueTime(nb, na, 0.33);
  const opts = { fraction: 0.33, jitterMs: 3_600_000 };
  const times = Array.from({ length: 200 }, (_, i) => renewalTime(`n${i}.example.com`, nb, na, opts));
  for (const t of times) assert.ok(t <= due && t >= due - 3_600_000);
  assert.equal(renewalTime('n7.example.com', nb, na, opts), times[7]);
  // 200 names over an hour: every 10-minute slice gets some, none gets most.
  const slices = new Array(6).fill(0);
  for (const t of times) slices[Math.min(5, Math.floor((due - t) / 600_000))]++;
  for (const n of slices) assert.ok(n > 10 && n < 70, `slices ${slices.join(',')}`);
  // The window never exceeds a tenth of a short lifetime.
  const short = renewalTime('x.example.com', nb, nb + 100_000, { fraction: 0.33, jitterMs: 3_600_000 });
  assert.ok(short >= nb + 50_000 - 10_000 && short <= nb + 50_000);
  assert.ok(unitHash('a') >= 0 && unitHash('a') < 1);
});

test('index: UTC hour buckets sort as strings; backoff 1 min, 10 min, 100 min, then daily', () => {
  assert.equal(hourBucket(Date.parse('2026-11-23T18:59:59.999Z')), '2026-11-23T18');
  assert.deepEqual(bucketsBetween('2026-11-23T22', '2026-11-24T01'), ['2026-11-23T22', '2026-11-23T23', '2026-11-24T00', '2026-11-24T01']);
  assert.deepEqual([1, 2, 3, 4, 9].map(renewalBackoffMs), [60_000, 600_000, 6_000_000, 86_400_000, 86_400_000]);
});
