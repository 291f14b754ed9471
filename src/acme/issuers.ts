// The ordered list of CAs certificates may come from (`acme.issuers`), each optionally with a
// staging directory used to re-validate a name after a production failure, and the rules that
// say what an ACME failure means for the retry logic.
import { AcmeIssuer, type AcmeIssuerDeps, type CaSpec, type IssuedCertificate, type IssueOptions, type SharedAcmeConfig } from './issuer.ts';
import type { RenewalWindow } from './plumbing/ari.ts';
import { ACME_ERROR, isAcmeError } from './plumbing/errors.ts';

/** What CertificateManager needs of an issuer (AcmeIssuer, or a stand-in in unit tests). */
export interface CertificateIssuer {
  readonly ca: string;
  readonly directory: string;
  issue(domain: string, opts?: IssueOptions): Promise<IssuedCertificate>;
  /** Revokes a certificate this CA issued, with the account that ordered it (absent: cannot revoke). */
  revokeCertificate?(domain: string, certPem: string, reason?: number): Promise<void>;
  /** The CA's ARI window for a certificate it issued; null when it offers none (absent: never asked). */
  renewalWindow?(certId: string, domain?: string): Promise<RenewalWindow | null>;
}

/** One entry of the issuer list: a production CA and, optionally, its staging twin. */
export interface IssuerChoice {
  production: CertificateIssuer;
  /** Where validation is retried after a production failure, until it succeeds there. */
  staging?: CertificateIssuer;
}

/** One `acme.issuers[]` entry as parsed, with its trusted roots read (PEM contents, not paths). */
export interface IssuerSpec extends CaSpec {
  /** Staging directory: same roots, no EAB. */
  staging?: string | undefined;
}

/** An IssuerChoice made of real ACME issuers (what createIssuers builds). */
export interface AcmeIssuerChoice extends IssuerChoice {
  production: AcmeIssuer;
  staging?: AcmeIssuer;
}

/**
 * The issuer list of the `acme` section as parsed, in the configured order, but with each issuer's
 * trusted roots read (IssuerSpec). Sends nothing: accounts are made at first use.
 */
export function createIssuers(acme: SharedAcmeConfig & { issuers: IssuerSpec[] }, deps: AcmeIssuerDeps): AcmeIssuerChoice[] {
  return acme.issuers.map((spec) => {
    const production = new AcmeIssuer(acme, { directory: spec.directory, trustedRoots: spec.trustedRoots, ...(spec.eab ? { eab: spec.eab } : {}) }, deps);
    // Staging directories (Let's Encrypt's) need no EAB; the same roots are trusted.
    const staging = spec.staging ? new AcmeIssuer(acme, { directory: spec.staging, trustedRoots: spec.trustedRoots }, deps) : undefined;
    return staging ? { production, staging } : { production };
  });
}

/** Identifies an issuer list: retry state recorded under another list is ignored. */
export function issuersKey(issuers: IssuerChoice[]): string {
  return issuers.map((i) => i.production.directory).join(' ');
}

/** A 429 or 503 with Retry-After at order time: the whole CA asks us to wait, not just this name. */
export function caPauseOf(err: unknown): { untilMs: number; reason: string } | null {
  if (!isAcmeError(err) || (err.status !== 429 && err.status !== 503) || err.retryAfterMs === undefined) return null;
  if (err.step !== 'new-order' && err.step !== 'new-nonce' && err.step !== 'directory' && err.status !== 503) return null;
  return { untilMs: Date.now() + err.retryAfterMs, reason: err.message };
}

/** The CA refused to validate the name (counts against the failed-authorization budget). */
export function isFailedAuthorization(err: unknown): boolean {
  return isAcmeError(err) && err.step === 'authorization' && err.type.startsWith(ACME_ERROR) && err.status !== 429 && err.status < 500;
}

/** A Retry-After the CA gave for this name (not a CA-wide pause). */
export function retryAfterOf(err: unknown): number | undefined {
  return isAcmeError(err) ? err.retryAfterMs : undefined;
}
