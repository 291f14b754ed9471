// What GET /v1/certificates/{name} answers, as zod schemas: the OpenAPI document's Certificate
// and NoCertificate are generated from them and the server's answers are typed by them, so the
// two cannot drift apart. Like bindings.ts, loaded only where the admin API runs.
import { z } from 'zod';
import type { NameRetryState } from '../issuance/backoff.ts';

/** An ISO 8601 time as the server writes it (toISOString); described, not pattern-checked. */
const dateTime = z.string().meta({ format: 'date-time' });

/**
 * A name's failures since its last success, from the certificate manager's retry state in
 * storage: the same on every instance, and kept across restarts.
 */
export const failureHistorySchema = z.object({
  attempts: z.int().min(0).describe('Failed attempts since the last success, on any instance (the shared retry state).'),
  lastError: z
    .object({
      at: dateTime,
      step: z.string().nullable().describe('The step that failed (e.g. "authorization", "directory"); null for failures recorded before certgate kept it.'),
      error: z.string(),
    })
    .nullable()
    .describe('The most recent failure; null when there is none since the last success.'),
  nextRetryAt: dateTime
    .nullable()
    .describe('No order for the name before this time (backoff, acme.retry); null when there are no failures or the name was given up.'),
  givenUp: z.boolean().describe('Failing for longer than acme.retry.giveUpAfter: no more orders until it is renewed through this API or acme.issuers changes.'),
});
/** Failed attempts for a name, read from the manager's retry state in storage (the same on every instance). */
export type FailureHistory = z.output<typeof failureHistorySchema>;

/** GET /v1/certificates/:name: the stored certificate, its renewal time and its failures (also the OpenAPI schema). */
export const certificateStatusSchema = z.object({
  domain: z.string(),
  ca: z.string().describe('Id of the CA (issuer) whose storage holds the certificate: the one that issued it.'),
  directory: z.string().describe('ACME directory of that CA.'),
  issuer: z.string().nullable().describe('Issuer DN of the leaf certificate.'),
  names: z.array(z.string()),
  serialNumber: z.string(),
  fingerprint256: z.string(),
  keyType: z.string(),
  notBefore: dateTime,
  notAfter: dateTime,
  obtainedAt: dateTime,
  nextRenewal: dateTime.nullable(),
  cached: z.boolean().describe('Held in this instance’s memory.'),
  ...failureHistorySchema.shape,
});
/** A certificate status answer, as certificateStatusSchema describes it. */
export type CertificateStatus = z.output<typeof certificateStatusSchema>;

/** The 404 answer: no certificate, and the failures (if any) that say why. */
export const noCertificateSchema = z.object({ error: z.string(), ...failureHistorySchema.shape });

/** The failures part of a status answer; a name with no retry state has none (attempts 0). */
export function failureHistory(state: NameRetryState | null): FailureHistory {
  if (!state) return { attempts: 0, lastError: null, nextRetryAt: null, givenUp: false };
  return {
    attempts: state.failures,
    lastError: { at: new Date(state.lastFailureAt).toISOString(), step: state.step ?? null, error: state.reason },
    nextRetryAt: state.retryAt === null ? null : new Date(state.retryAt).toISOString(),
    givenUp: state.retryAt === null,
  };
}
