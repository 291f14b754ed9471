// Issue 19 item 6: the soak's "growth levels off" criterion (bench/soak-criteria.ts) on made-up
// series: GC sawtooth, noise and a step at the start of the judged part pass; a steady leak on
// top of the same sawtooth fails, and so does a series with too few readings.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { judgeSeries, smooth, theilSen, type Point, type SeriesRule } from '../../bench/soak-criteria.ts';

const RULE: SeriesRule = { name: 'heap (MiB)', smooth: 'band', absolute: 16, relative: 0.2 };
const OPTS = { judgeFromS: 300, durationS: 600, spanS: 30 };

/** A 600 s series sampled every 5 s: base + GC sawtooth (rise over `periodS`, then a drop) + noise + leak. */
function series(p: { base: number; tooth: number; periodS: number; noise: number[]; leakPerMin: number; warmUp: number }): Point[] {
  const out: Point[] = [];
  for (let i = 0; i <= 120; i++) {
    const tS = i * 5;
    const saw = p.tooth * ((tS % p.periodS) / p.periodS);
    // Caches filling in the first sixth: growth the criterion must not judge.
    const fill = p.warmUp * Math.min(1, tS / 100);
    out.push({ tS, value: p.base + fill + saw + p.noise[i % p.noise.length]! + (p.leakPerMin * tS) / 60 });
  }
  return out;
}

test('theilSen is the slope of a line, and ignores one outlier', () => {
  const line = [0, 1, 2, 3, 4, 5].map((t) => ({ tS: t, value: 3 * t + 1 }));
  assert.equal(theilSen(line), 3);
  line[2] = { tS: 2, value: 1000 };
  assert.equal(theilSen(line), 3);
});

test('smooth: the lower envelope drops every sawtooth peak within the span', () => {
  const pts = [10, 20, 30, 10, 20, 30, 10].map((value, i) => ({ tS: i * 10, value }));
  assert.deepEqual(smooth(pts, 20, 'floor').map((p) => p.value), [10, 10, 10, 10, 10, 10, 10]);
});

test('flat memory with GC sawtooth, noise and a warm-up passes; the same with a leak fails (property)', () => {
  const shape = fc.record({
    base: fc.integer({ min: 40, max: 400 }),
    tooth: fc.integer({ min: 0, max: 40 }),
    // Collections at least once per smoothing span (30 s), so the envelope sees the floor.
    periodS: fc.integer({ min: 5, max: 30 }),
    noise: fc.array(fc.double({ min: -2, max: 2, noNaN: true }), { minLength: 1, maxLength: 20 }),
    warmUp: fc.integer({ min: 0, max: 200 }),
  });
  fc.assert(
    fc.property(shape, (s) => {
      const flat = judgeSeries(RULE, series({ ...s, leakPerMin: 0 }), OPTS);
      assert.ok(flat.pass, `flat series failed: ${JSON.stringify(flat)}`);
      // A leak that adds twice the bound over the judged 300 s.
      const bound = Math.max(RULE.absolute, RULE.relative * flat.level);
      const leaking = judgeSeries(RULE, series({ ...s, leakPerMin: (2 * bound) / 5 }), OPTS);
      assert.ok(!leaking.pass, `leaking series passed: ${JSON.stringify(leaking)}`);
      assert.match(leaking.reason, /does not level off/);
    }),
    { seed: 42, numRuns: 300 },
  );
});

test('a sawtooth whose drops stop (RSS left at its former peaks) lifts one edge of the band only: not growth', () => {
  const pts: Point[] = [];
  for (let i = 0; i <= 120; i++) {
    const tS = i * 5;
    // Rises 30 over 100 s and drops back, until 400 s; then stays at the peak.
    pts.push({ tS, value: tS < 400 ? 350 + 30 * ((tS % 100) / 100) : 380 });
  }
  const rule: SeriesRule = { ...RULE, absolute: 10, relative: 0 };
  assert.ok(judgeSeries(rule, pts, { ...OPTS, spanS: 60, lookbackFromS: 240 }).pass);
  // The same with the band's floor alone reads the end of the sawtooth as growth.
  const floorOnly = theilSen(smooth(pts.filter((p) => p.tS >= 300) as Array<{ tS: number; value: number }>, 60, 'floor')) * 300;
  assert.ok(floorOnly > 10, `floor alone: ${floorOnly}`);
});

test('a step at the start of the judged part (a reconnect) is not growth; missing readings are', () => {
  const pts: Point[] = [];
  for (let i = 0; i <= 120; i++) pts.push({ tS: i * 5, value: i * 5 < 310 ? 100 : 130 });
  assert.ok(judgeSeries(RULE, pts, OPTS).pass);
  const sparse = pts.map((p) => (p.tS >= 300 && p.tS < 590 ? { tS: p.tS, value: null } : p));
  const v = judgeSeries(RULE, sparse, OPTS);
  assert.equal(v.pass, false);
  assert.match(v.reason, /readings in the judged part/);
});
