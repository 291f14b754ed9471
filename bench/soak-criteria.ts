// The soak's pass/fail rule for "growth levels off", kept apart from the run so that it can be
// tested on made-up series (test/bench/soak-criteria.test.ts).
//
//   1. only the judged part counts: samples from `judgeFromS` on (the soak sets it to half the
//      run, after its bounded caches have filled and after the Redis restart's window)
//   2. the series is smoothed so that GC sawtooth cannot look like growth: for memory and handles
//      its band, the lower and the upper envelope (rolling minimum and maximum over `spanS`), for
//      event-loop delay its rolling median
//   3. the slope of the smoothed series is the Theil–Sen estimate (median of the slopes between
//      every pair of points), which single outliers and steps at the ends barely move. For a
//      band, the smaller of the two envelopes' slopes: a leak lifts the whole band, while a
//      sawtooth that changes its shape moves one edge only (seen in a 10-minute run: the drops
//      after collections stopped and RSS stayed at its former peaks, which lifts the floor alone)
//   4. growth = slope × length of the judged part; it passes when growth ≤ max(absolute bound,
//      relative bound × median level of the judged part). The same slope over the first third is
//      reported beside it (how steep the start was), never judged: a series that is flat from the
//      start has nothing to level off from.

/** One reading of a series: seconds since the soak started, and the value (null: not read). */
export interface Point {
  tS: number;
  value: number | null;
}

/** How one series is judged. */
export interface SeriesRule {
  /** Name printed in the verdict, e.g. "rss tree (MiB)". */
  name: string;
  /** 'band': lower and upper envelope (memory, handles); 'level': rolling median (delays). */
  smooth: 'band' | 'level';
  /** Growth over the judged part always allowed, in the series' unit. */
  absolute: number;
  /** Growth allowed as a fraction of the judged part's median level. */
  relative: number;
}

/** The verdict on one series. */
export interface SeriesVerdict {
  name: string;
  pass: boolean;
  /** Points in the judged part that had a value. */
  points: number;
  /** Theil–Sen slope of the smoothed judged part, unit per minute. */
  slopePerMin: number;
  /** The same over the first third of the run, unit per minute (for the report only). */
  earlySlopePerMin: number;
  /** slope × length of the judged part. */
  growth: number;
  /** The allowed growth: max(absolute, relative × level). */
  bound: number;
  /** Median of the judged part. */
  level: number;
  /** Why it failed (or could not be judged); empty when it passed. */
  reason: string;
}

/** Median of a copy; NaN when empty. */
export function medianOf(values: number[]): number {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Step 3: median of the pairwise slopes (value per second); 0 with fewer than two points. */
export function theilSen(points: Array<{ tS: number; value: number }>): number {
  const slopes: number[] = [];
  for (let i = 0; i < points.length; i++) {
    for (let j = i + 1; j < points.length; j++) {
      const dt = points[j]!.tS - points[i]!.tS;
      if (dt > 0) slopes.push((points[j]!.value - points[i]!.value) / dt);
    }
  }
  return slopes.length ? medianOf(slopes) : 0;
}

/** Step 2: each point replaced by the min (floor), max (ceiling) or median (level) of the points in the `spanS` before it. */
export function smooth(points: Array<{ tS: number; value: number }>, spanS: number, how: 'floor' | 'ceiling' | 'level'): Array<{ tS: number; value: number }> {
  return points.map((p, i) => {
    const window: number[] = [];
    for (let j = i; j >= 0 && p.tS - points[j]!.tS <= spanS; j--) window.push(points[j]!.value);
    return { tS: p.tS, value: how === 'floor' ? Math.min(...window) : how === 'ceiling' ? Math.max(...window) : medianOf(window) };
  });
}

/**
 * Steps 2-3: the slope (per second) a rule reads from the points at or after `fromS`; points
 * before it only fill the first smoothing windows.
 */
export function smoothedSlope(points: Array<{ tS: number; value: number }>, spanS: number, how: 'band' | 'level', fromS = -Infinity): number {
  const slope = (edge: 'floor' | 'ceiling' | 'level'): number => theilSen(smooth(points, spanS, edge).filter((p) => p.tS >= fromS));
  return how === 'level' ? slope('level') : Math.min(slope('floor'), slope('ceiling'));
}

/**
 * Steps 1-4 for one series. `durationS` is the run's length (for the first third); readings from
 * `lookbackFromS` (default `judgeFromS`) fill the smoothing windows of the first judged points.
 */
export function judgeSeries(rule: SeriesRule, series: Point[], opts: { judgeFromS: number; durationS: number; spanS: number; lookbackFromS?: number; minPoints?: number }): SeriesVerdict {
  const known = series.filter((p): p is { tS: number; value: number } => p.value !== null && Number.isFinite(p.value));
  const judged = known.filter((p) => p.tS >= opts.judgeFromS);
  const early = known.filter((p) => p.tS <= opts.durationS / 3);
  // Without the look-back, an envelope's first points would see fewer readings than the rest.
  const lookback = known.filter((p) => p.tS >= Math.min(opts.lookbackFromS ?? opts.judgeFromS, opts.judgeFromS));
  const slope = smoothedSlope(lookback, opts.spanS, rule.smooth, opts.judgeFromS);
  const lengthS = judged.length > 1 ? judged[judged.length - 1]!.tS - judged[0]!.tS : 0;
  const level = medianOf(judged.map((p) => p.value));
  const growth = slope * lengthS;
  const bound = Math.max(rule.absolute, rule.relative * (Number.isFinite(level) ? level : 0));
  const verdict = {
    name: rule.name,
    points: judged.length,
    slopePerMin: slope * 60,
    earlySlopePerMin: smoothedSlope(early, opts.spanS, rule.smooth) * 60,
    growth,
    bound,
    level,
  };
  if (judged.length < (opts.minPoints ?? 5)) return { ...verdict, pass: false, reason: `only ${judged.length} readings in the judged part (need ${opts.minPoints ?? 5})` };
  if (growth > bound) return { ...verdict, pass: false, reason: `grew ${fmt(growth)} over the last ${Math.round(lengthS)} s (bound ${fmt(bound)}): growth does not level off` };
  return { ...verdict, pass: true, reason: '' };
}

function fmt(v: number): string {
  return Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(2);
}
