// One attempt at a certificate: one deadline, one cancellation, one log line per step. Every step
// of obtain.ts and authorize.ts runs through `step()`, which
//   1. races the step against the attempt's signal (overall time-out, caller's abort, fail-fast
//      after another authorization failed): the attempt ends at once, the step is left to settle
//   2. logs `acme <step>` with domain, step, ca, ms and totalMs, or `acme <step> failed`
//   3. puts the step's domain on an AcmeError that lacks one (or names the whole order)
import type { Logger } from '../util/log.ts';
import { AcmeError, LocalErrorType } from './plumbing/errors.ts';

/** The bounds of an attempt. */
export interface AttemptOptions {
  /** Overall time limit. */
  timeoutMs: number;
  /** The caller's cancellation. */
  signal?: AbortSignal;
  logger: Logger;
  /** The CA (directory URL) logs name. */
  ca: string;
}

/** Rejects as soon as `signal` aborts, without waiting for `work` (which is left to settle). */
function race<T>(work: Promise<T>, signal: AbortSignal, onAbort: () => Error): Promise<T> {
  if (signal.aborted) {
    work.catch(() => undefined);
    return Promise.reject(onAbort());
  }
  return new Promise<T>((resolve, reject) => {
    const listener = (): void => reject(onAbort());
    signal.addEventListener('abort', listener, { once: true });
    work.then(
      (v) => {
        signal.removeEventListener('abort', listener);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', listener);
        reject(e);
      },
    );
  });
}

/**
 * The state of one attempt. `signal` goes to every request so that nothing outlives the attempt;
 * `failFast()` ends the other steps still running after one failed (their `aborted` errors are not
 * logged again).
 */
export class Attempt {
  /** Aborts on the deadline, the caller's signal, or failFast(). */
  readonly signal: AbortSignal;
  readonly log: Logger;
  readonly ca: string;
  private readonly opts: AttemptOptions;
  private readonly deadline: number;
  private readonly failed = new AbortController();
  private readonly started = performance.now();

  constructor(opts: AttemptOptions) {
    this.opts = opts;
    this.log = opts.logger;
    this.ca = opts.ca;
    this.deadline = Date.now() + opts.timeoutMs;
    const signals = [AbortSignal.timeout(opts.timeoutMs), this.failed.signal];
    if (opts.signal) signals.push(opts.signal);
    this.signal = AbortSignal.any(signals);
  }

  /** Time left until the deadline, at least 1 ms (for a poll's own time-out). */
  remaining(): number {
    return Math.max(1, this.deadline - Date.now());
  }

  /** Milliseconds since the attempt started. */
  elapsed(): number {
    return Math.round(performance.now() - this.started);
  }

  /** Ends every step still running: another one failed with `reason`. */
  failFast(reason: unknown): void {
    this.failed.abort(reason);
  }

  /** The `aborted` (caller) or `timeout` error of the attempt, naming the step and domain. */
  abortError(step: string, domain: string): AcmeError {
    const aborted = this.opts.signal?.aborted === true;
    return new AcmeError({
      type: aborted ? LocalErrorType.aborted : LocalErrorType.timeout,
      status: 0,
      detail: aborted ? 'aborted by caller' : `certificate not obtained within ${this.opts.timeoutMs} ms`,
      step,
      domain,
      cause: this.signal.reason,
    });
  }

  /** `work` raced against the attempt's signal, without logging (see step()). */
  race<T>(work: Promise<T>, step: string, domain: string): Promise<T> {
    return race(work, this.signal, () => this.abortError(step, domain));
  }

  /** Runs one step: races it against the attempt, logs it, puts the domain on its errors. */
  async step<T>(name: string, domain: string, fn: () => Promise<T>, extra: Record<string, unknown> = {}): Promise<T> {
    const t0 = performance.now();
    try {
      const value = await this.race(fn(), name, domain);
      this.log.info({ domain, step: name, ca: this.ca, ms: Math.round(performance.now() - t0), totalMs: this.elapsed(), ...extra }, `acme ${name}`);
      return value;
    } catch (err) {
      let error: unknown = err;
      if (err instanceof AcmeError) {
        if (err.domain === undefined || err.domain.includes(',')) error = err.withContext({ domain });
      } else if (this.signal.aborted) {
        error = this.abortError(name, domain);
      }
      // After failFast the other steps' aborts are consequences, not news.
      if (!this.failed.signal.aborted || !(error instanceof AcmeError && error.type === LocalErrorType.aborted)) {
        const message = error instanceof Error ? error.message : String(error);
        this.log.warn({ domain, step: name, ca: this.ca, ms: Math.round(performance.now() - t0), err: message, ...extra }, `acme ${name} failed`);
      }
      throw error;
    }
  }
}
