// Sampling for log lines an outsider can trigger at will (unknown challenge requests, challenge
// handshakes for random names): at most `maxPerInterval` lines per interval, and the first line
// after a quiet spell says how many were left out, so a flood costs a few lines, not megabytes.

/** How many lines per interval get through. */
export interface LogSamplerOptions {
  /** Lines let through per interval. */
  maxPerInterval: number;
  intervalMs: number;
  now?: () => number;
}

/** Decides which lines of a flood are logged (see the header); one per kind of line. */
export class LogSampler {
  private windowStart = -Infinity;
  private logged = 0;
  private suppressed = 0;

  constructor(private readonly opts: LogSamplerOptions) {}

  /**
   * Call once per event. Returns undefined when this event's line must be left out; otherwise
   * the number of lines left out since the last one logged (put it in the line as
   * `suppressedSinceLastLine`, so the log still tells how big the flood was).
   */
  sample(): number | undefined {
    const now = (this.opts.now ?? Date.now)();
    if (now - this.windowStart >= this.opts.intervalMs) {
      this.windowStart = now;
      this.logged = 0;
    }
    if (this.logged >= this.opts.maxPerInterval) {
      this.suppressed++;
      return undefined;
    }
    this.logged++;
    const suppressed = this.suppressed;
    this.suppressed = 0;
    return suppressed;
  }
}

/** `text` cut to `max` characters (an ellipsis marks the cut), for attacker-chosen log fields. */
export function truncateForLog(text: string | undefined, max: number): string | undefined {
  if (text === undefined || text.length <= max) return text;
  return `${text.slice(0, max)}…`;
}
