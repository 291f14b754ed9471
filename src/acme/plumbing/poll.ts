// Polling a resource until it settles (RFC 8555 §7.5.1, §7.4): the CA's Retry-After when it sends
// one (capped), else from `pollInitialMs` (250 ms) growing ×1.5 up to `pollMaxMs`. The whole wait
// has a deadline and honours the caller's AbortSignal; either ends it with an AcmeError naming the
// step and the domain.
import type { Logger } from '../../util/log.ts';
import { AcmeError, LocalErrorType } from './errors.ts';
import { parseRetryAfter, type PollTiming } from './transport.ts';

/** A caller's bounds on a wait: time limit (default 60 s) and cancellation. */
export interface WaitOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
  /**
   * Wait the first delay (pollInitialMs) before the first request too: for a resource the caller
   * has just asked the CA to work on (a challenge it was told to validate), which an immediate
   * request would only find unchanged. Default false.
   */
  delayFirst?: boolean;
}

/** One poll: done with a value, or not yet (with the answer's Retry-After and, once known, the domain). */
export type PollResult<T> = { done: T } | { retryAfter: string | undefined; domain?: string };

/** The default deadline of a wait without `timeoutMs`. */
export const DEFAULT_WAIT_MS = 60_000;

/** Next delay: Retry-After (capped) when given, else backoff ×1.5 from pollInitialMs up to pollMaxMs. */
export function nextDelay(timing: PollTiming, retryAfter: string | undefined, previous: number | undefined): { delay: number; backoff: number } {
  const backoff = previous === undefined ? timing.pollInitialMs : Math.min(previous * 1.5, timing.pollMaxMs);
  const ra = parseRetryAfter(retryAfter);
  if (ra !== undefined) return { delay: Math.min(Math.max(ra, 0), timing.maxRetryAfterMs), backoff };
  return { delay: backoff, backoff };
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Calls `once` until it returns `{ done }`. `once` gets the combined deadline/caller signal and
 * should pass it to its request. An error `once` throws ends the wait as it is, except that a
 * time-out or abort caused by the wait's own signal becomes the wait's `timeout`/`aborted` error.
 */
export async function poll<T>(
  transport: { readonly pollTiming: PollTiming; readonly log: Logger },
  once: (signal: AbortSignal) => Promise<PollResult<T>>,
  opts: WaitOptions & { step: string; domain?: string },
): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_WAIT_MS;
  const timer = AbortSignal.timeout(timeoutMs);
  const signal = opts.signal ? AbortSignal.any([timer, opts.signal]) : timer;
  const started = performance.now();
  let backoff: number | undefined;
  let domain = opts.domain;
  let polls = 0;
  const fail = (cause: unknown): AcmeError => {
    const aborted = opts.signal?.aborted === true;
    return new AcmeError({
      type: aborted ? LocalErrorType.aborted : LocalErrorType.timeout,
      status: 0,
      detail: aborted ? `aborted after ${Math.round(performance.now() - started)} ms` : `not done after ${timeoutMs} ms (${polls} polls)`,
      step: opts.step,
      domain,
      cause,
    });
  };
  if (opts.delayFirst) {
    backoff = transport.pollTiming.pollInitialMs;
    await sleep(backoff, signal).catch((err: unknown) => {
      throw fail(err);
    });
  }
  for (;;) {
    if (signal.aborted) throw fail(signal.reason);
    let result: PollResult<T>;
    try {
      polls++;
      result = await once(signal);
    } catch (err) {
      const ownSignal = signal.aborted && err instanceof AcmeError && (err.type === LocalErrorType.aborted || err.type === LocalErrorType.timeout);
      throw ownSignal ? fail(err) : err;
    }
    if ('done' in result) {
      transport.log.debug({ step: opts.step, domain, polls, ms: Math.round(performance.now() - started) }, 'acme poll done');
      return result.done;
    }
    domain ??= result.domain;
    const next = nextDelay(transport.pollTiming, result.retryAfter, backoff);
    backoff = next.backoff;
    await sleep(next.delay, signal).catch((err: unknown) => {
      throw fail(err);
    });
  }
}
