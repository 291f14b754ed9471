// When a certificate is due for renewal, from its own validity (never an assumed lifetime):
//   lifetime >= 10 days: when `fraction` of the lifetime remains (default 1/3, like Let's Encrypt's 30 of 90 days)
//   lifetime <  10 days: at half-life (short-lived certificates, e.g. the `shortlived` profile)
// minus a deterministic per-name jitter, so certificates issued in the same hour spread their
// renewals over a window instead of all hitting the CA in the same second.
import { unitHash } from '../util/unit-hash.ts';

/** Below this lifetime (10 days) a certificate renews at half-life. */
export const SHORT_LIVED_MS = 10 * 24 * 3_600_000;

/** renewal.fraction and renewal.jitter, as renewalTime() takes them. */
export interface RenewalTimingOptions {
  /** Fraction of the lifetime remaining at renewal, 0 < fraction < 1. */
  fraction: number;
  /** Width of the jitter window; capped at a tenth of the lifetime. */
  jitterMs: number;
}

/** The time (ms) at which the certificate should be renewed, before jitter. */
export function dueTime(notBefore: number, notAfter: number, fraction: number): number {
  const lifetime = Math.max(0, notAfter - notBefore);
  if (lifetime < SHORT_LIVED_MS) return notBefore + lifetime / 2;
  return notAfter - lifetime * fraction;
}

/** Due time minus this name's share of the jitter window: renewals spread over [due - window, due]. */
export function renewalTime(domain: string, notBefore: number, notAfter: number, opts: RenewalTimingOptions): number {
  const lifetime = Math.max(0, notAfter - notBefore);
  const window = Math.min(opts.jitterMs, lifetime / 10);
  return Math.round(dueTime(notBefore, notAfter, opts.fraction) - unitHash(domain, 'renewal') * window);
}
