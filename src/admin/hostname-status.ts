// A bound hostname's lifecycle status, what its checks found and what its owner must fix, as
// GET /v1/domains and GET /v1/domains/{name} answer (zod schemas, so the OpenAPI document is
// generated from them and cannot drift):
//   1. status: one function of what storage holds (binding, certificate, failure record), so the
//      list and the single GET always agree, and neither needs the network
//   2. verification: those facts plus the last DNS/CAA/ownership check results this instance
//      holds (hostname-checks.ts runs them: at bind, on ?check=true)
//   3. errors: sentences a panel shows as they are, each naming the record or action to take
import { z } from 'zod';
import type { NameRetryState } from '../issuance/backoff.ts';
import type { CaaVerdict } from '../policy/caa.ts';
import type { DnsVerdict } from '../policy/dns.ts';
import type { OwnershipRecord, OwnershipResult } from '../policy/ownership.ts';
import type { DomainBinding } from '../policy/registry.ts';

/** The lifecycle statuses, in the order hostnameStatus() tests them. */
export const HOSTNAME_STATUSES = ['disabled', 'active', 'blocked', 'failed', 'pending'] as const;
/** One of HOSTNAME_STATUSES. */
export type HostnameStatus = (typeof HOSTNAME_STATUSES)[number];

/** The certificate facts the status needs (from the stored meta.json and the leaf). */
export interface CertificateFacts {
  notAfter: string;
  issuer: string | null;
  ca: string;
}

/**
 * A binding's status; the first rule that applies wins:
 *   - `disabled`: the binding is switched off (`enabled: false`), whatever else holds;
 *   - `active`: a certificate is stored for it and not expired at `now` (it is what handshakes
 *     get; a renewal failure since then does not change this, it shows in `errors`);
 *   - `blocked`: no valid certificate and the name was given up (failing longer than
 *     acme.retry.giveUpAfter): no order until an operator renews it or the issuers change;
 *   - `failed`: no valid certificate and the last issuance failed; a retry is scheduled (nextRetry);
 *   - `pending`: bound, no certificate yet and no failure on record: waiting for its first
 *     handshake or issue call, or for its DNS or ownership TXT record (errors say which).
 * Only storage facts go in, so every instance and every page answers the same.
 */
export function hostnameStatus(binding: Pick<DomainBinding, 'enabled'>, certificate: CertificateFacts | null, failure: NameRetryState | null, now = Date.now()): HostnameStatus {
  if (!binding.enabled) return 'disabled';
  if (certificate && Date.parse(certificate.notAfter) > now) return 'active';
  if (failure && failure.retryAt === null) return 'blocked';
  if (failure) return 'failed';
  return 'pending';
}

/** The last checks this instance ran for a name (hostname-checks.ts); each part absent when not run. */
export interface CheckResults {
  at: string;
  dns?: DnsVerdict;
  caa?: CaaVerdict | { error: string };
  ownership?: OwnershipResult;
}

/** How the checks are configured: the DNS targets (null: no onDemand.dns) and the ownership record maker. */
export interface CheckContext {
  dnsTargets: readonly string[] | null;
  ownershipRecord: ((name: string, token: string) => OwnershipRecord) | null;
}

const dateTime = z.string().meta({ format: 'date-time' });

/** `verification` in a hostname answer. */
export const verificationSchema = z.object({
  checkedAt: dateTime.nullable().describe('When this instance last ran the DNS/CAA/ownership checks for the name (at bind, ?check=true); null: not here since it started.'),
  dns: z
    .object({
      ok: z.boolean(),
      resolved: z.array(z.string()).describe('What the name resolved to: "CNAME <target>" links, then addresses.'),
      expected: z.array(z.string()).describe('onDemand.dns.targets: host names to CNAME to, addresses for A/AAAA.'),
      reason: z.string().nullable(),
    })
    .nullable()
    .describe('The onDemand.dns check; null when it is not configured or was not run here yet.'),
  caa: z
    .object({
      records: z.array(z.object({ at: z.string(), flags: z.int(), tag: z.string(), value: z.string() })),
      forbids: z.array(z.string()).describe('Configured CAs (ids) the CAA records forbid.'),
      unknown: z.array(z.string()).describe('Configured CAs whose CAA identity is not known (not judged).'),
      error: z.string().nullable().describe('Why the CAA lookup could not be done.'),
    })
    .nullable(),
  ownership: z
    .object({
      record: z.object({ name: z.string(), type: z.literal('TXT'), value: z.string() }),
      verified: z.boolean(),
      verifiedAt: dateTime.nullable(),
      found: z.array(z.string()).describe('TXT values seen at the record name at the last check (when not verified).'),
    })
    .nullable()
    .describe('onDemand.ownership: the record the owner must create; null when the binding needs none.'),
  lastError: z.object({ step: z.string().nullable(), message: z.string(), at: dateTime }).nullable(),
  nextRetry: dateTime.nullable(),
  certificate: z.object({ notAfter: dateTime, issuer: z.string().nullable(), ca: z.string() }).nullable(),
});

/** One hostname as the admin API answers it: the binding, its status, verification and errors. */
export const hostnameSchema = z.object({
  name: z.string(),
  upstream: z.string().optional(),
  tenant: z.string().optional(),
  label: z.string().optional(),
  enabled: z.boolean().describe('The switch: false denies issuance and stops serving the certificate.'),
  createdAt: dateTime,
  updatedAt: dateTime,
  status: z.enum(HOSTNAME_STATUSES).describe('pending | active | failed | blocked | disabled (see docs/config.md, "Hostname status").'),
  verification: verificationSchema,
  errors: z.array(z.string()).describe('Sentences a panel can show as they are, each naming what to fix; empty when nothing is wrong.'),
});
/** A hostname answer, as hostnameSchema describes it. */
export type Hostname = z.output<typeof hostnameSchema>;

/** Everything a hostname answer is built from. */
export interface HostnameFacts {
  binding: DomainBinding;
  certificate: CertificateFacts | null;
  failure: NameRetryState | null;
  checks: CheckResults | undefined;
}

/** Steps 1-3 for one hostname. */
export function describeHostname({ binding, certificate, failure, checks }: HostnameFacts, context: CheckContext, now = Date.now()): Hostname {
  const status = hostnameStatus(binding, certificate, failure, now);
  const { ownership: proof, ...fields } = binding;
  const record = proof && context.ownershipRecord ? context.ownershipRecord(binding.name, proof.token) : null;
  const caa = checks?.caa;
  const verification: Hostname['verification'] = {
    checkedAt: checks?.at ?? null,
    dns: context.dnsTargets && checks?.dns ? { ok: checks.dns.ok, resolved: checks.dns.resolved ?? [], expected: [...context.dnsTargets], reason: checks.dns.ok ? null : checks.dns.reason } : null,
    caa: !caa ? null : 'error' in caa ? { records: [], forbids: [], unknown: [], error: caa.error } : { ...caa, error: null },
    ownership:
      proof && record
        ? { record, verified: Boolean(proof.verifiedAt), verifiedAt: proof.verifiedAt ?? null, found: !proof.verifiedAt && checks?.ownership && !checks.ownership.seen ? checks.ownership.found : [] }
        : null,
    lastError: failure ? { step: failure.step ?? null, message: failure.reason, at: new Date(failure.lastFailureAt).toISOString() } : null,
    nextRetry: failure?.retryAt ? new Date(failure.retryAt).toISOString() : null,
    certificate,
  };
  return { ...fields, status, verification, errors: errorSentences(binding.name, status, verification, context, now) };
}

/** Step 3: what a panel shows; each sentence names the record to create or the action to take. */
function errorSentences(name: string, status: HostnameStatus, v: Hostname['verification'], context: CheckContext, now: number): string[] {
  const errors: string[] = [];
  if (status === 'disabled') errors.push(`${name} is disabled: its certificate is not served and none is issued until its binding is enabled again.`);
  if (v.ownership && !v.ownership.verified) {
    const seen = v.ownership.found.length ? ` (found ${v.ownership.found.map((f) => JSON.stringify(f)).join(', ')} instead)` : '';
    errors.push(`create TXT ${v.ownership.record.name} with value ${v.ownership.record.value} to prove you own ${name}${seen}; no certificate is issued until it is seen.`);
  }
  if (v.dns && !v.dns.ok && context.dnsTargets) errors.push(dnsSentence(name, v.dns.resolved, v.dns.reason, context.dnsTargets));
  if (v.caa && v.caa.forbids.length > 0 && v.caa.unknown.length === 0 && v.caa.records.length > 0) {
    const at = v.caa.records[0]!.at;
    const listed = v.caa.records.map((r) => `${r.flags} ${r.tag} "${r.value}"`).join(', ');
    errors.push(`the CAA records of ${at} (${listed}) forbid every certificate authority this platform uses; add a CAA issue record for them or remove those records.`);
  }
  if (status === 'blocked' && v.lastError) {
    errors.push(`certgate gave up on ${name} after repeated failures (last, at step ${v.lastError.step ?? 'unknown'}: ${v.lastError.message}); fix the cause, then renew it through the admin API.`);
  } else if (v.lastError) {
    const retry = v.nextRetry ? `; next try after ${v.nextRetry}` : '';
    errors.push(`the last attempt to obtain a certificate for ${name} failed at step ${v.lastError.step ?? 'unknown'}: ${v.lastError.message}${retry}.`);
  }
  if (v.certificate && Date.parse(v.certificate.notAfter) <= now && status !== 'disabled') errors.push(`the certificate of ${name} expired at ${v.certificate.notAfter}; a new one is ordered at the next handshake.`);
  return errors;
}

/**
 * "blog.alice.com points at 203.0.113.9; create a CNAME to edge.platform.example (or an A record
 * to 198.51.100.7)": what the name resolves to and the records that would make it point here.
 */
export function dnsSentence(name: string, resolved: readonly string[], reason: string | null, targets: readonly string[]): string {
  const options = targets.map((t) => (/^[\d.]+$/.test(t) ? `an A record to ${t}` : t.includes(':') ? `an AAAA record to ${t}` : `a CNAME to ${t}`));
  const fix = options.length > 1 ? `create ${options[0]} (or ${options.slice(1).join(', or ')})` : `create ${options[0] ?? 'a record pointing at this platform'}`;
  const addresses = resolved.filter((r) => !r.startsWith('CNAME '));
  const cname = resolved.find((r) => r.startsWith('CNAME '));
  if (addresses.length > 0) return `${name} points at ${addresses.slice(0, 4).join(', ')}; ${fix}.`;
  if (cname) return `${name} is a ${cname.replace(/^CNAME /, 'CNAME to ')}, which does not resolve; ${fix}.`;
  if (reason?.startsWith('DNS lookup failed')) return `the DNS lookup of ${name} failed (${reason.replace('DNS lookup failed: ', '')}); check its DNS servers, then ${fix}.`;
  return `${name} does not resolve; ${fix}.`;
}
