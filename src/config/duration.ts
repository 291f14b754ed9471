// Durations in config: a number of milliseconds, or a string like "250ms", "20s", "5m", "3h", "7d".
const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * Milliseconds, or undefined when `value` is not a duration: negative, not finite, or a string
 * not in the syntax above. A string with more digits than a double holds is refused, not Infinity.
 */
export function parseDuration(value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? value : undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$/.exec(value);
  if (!m) return undefined;
  const ms = Math.round(Number(m[1]) * UNITS[m[2]!]!);
  return Number.isFinite(ms) ? ms : undefined;
}
