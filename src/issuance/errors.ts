// Why an attempt ended without a certificate, as far as the backoff is concerned: skipped (no CA
// was even asked, so the name is not at fault and no failure is recorded) or failed at every
// issuer (recorded, with which CAs failed and which recovered on staging).

/**
 * No issuer could even be asked (budgets spent, CAs paused, name in backoff, queue full): the
 * name gets the fallback and no failure is recorded. `step` names the gate that stopped it.
 */
export class IssuanceSkipped extends Error {
  constructor(
    message: string,
    readonly step = 'issuer-skipped',
  ) {
    super(message);
  }
}

/**
 * Every issuer was tried and failed for the name: the failure is recorded for backoff. `step` is
 * the last failing ACME step; `failedCas` and `recoveredCas` (staging succeeded again) steer the
 * next attempt's staging-first rule; `retryAfterMs` is the longest Retry-After a CA asked for.
 */
export class IssuersFailed extends Error {
  constructor(
    message: string,
    readonly step: string,
    readonly failedCas: string[],
    readonly recoveredCas: string[],
    readonly retryAfterMs: number | undefined,
  ) {
    super(message);
  }
}

/** The `step` an error carries (ACME and storage errors do), or `fallback`. */
export function stepOf(err: unknown, fallback: string): string {
  return (err as { step?: string }).step ?? fallback;
}
