// ACME Renewal Information (RFC 9773): the CA suggests a window in which to renew each
// certificate (earlier than planned after a revocation or an incident). The certificate ID is
// base64url(AuthorityKeyIdentifier.keyIdentifier) "." base64url(serial number DER content);
// a renewal sends it as `replaces` in the new order. Asking is an unauthenticated GET: no
// account is needed, only the directory of the CA that issued the certificate.
import { X509Certificate } from 'node:crypto';
import { unitHash } from '../../util/unit-hash.ts';
import { leafDer } from './certificate.ts';
import type { Directory } from './directory.ts';
import { header, parseRetryAfter, problemError, protocolError, requireJson } from './transport.ts';

/** The CA's suggested window (ms since epoch) and when to ask again. */
export interface RenewalWindow {
  start: number;
  end: number;
  /** From Retry-After: when to ask again. */
  retryAfterMs?: number;
  explanationURL?: string;
}

/** Without Retry-After, ask again after this long (RFC 9773 suggests a few hours). */
export const ARI_DEFAULT_REFETCH_MS = 6 * 3_600_000;
/** Bounds on an honoured Retry-After: never hammer the CA, never forget a certificate for days. */
export const ARI_MIN_REFETCH_MS = 1_000;
/** Upper bound on an honoured Retry-After (see ARI_MIN_REFETCH_MS). */
export const ARI_MAX_REFETCH_MS = 24 * 3_600_000;

const AKI_OID = Buffer.from([0x06, 0x03, 0x55, 0x1d, 0x23]); // 2.5.29.35

/** Reads one DER TLV at `at`: tag, content start and content length. */
function tlv(der: Buffer, at: number): { tag: number; start: number; length: number } {
  const tag = der[at]!;
  let len = der[at + 1]!;
  let start = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + der[start + i]!;
    start += n;
  }
  return { tag, start, length: len };
}

/** keyIdentifier of the AuthorityKeyIdentifier extension, or undefined when absent. */
export function authorityKeyIdentifier(der: Buffer): Buffer | undefined {
  const at = der.indexOf(AKI_OID);
  if (at < 0) return undefined;
  let next = tlv(der, at + AKI_OID.length);
  if (next.tag === 0x01) next = tlv(der, next.start + next.length); // critical flag
  if (next.tag !== 0x04) return undefined; // extnValue OCTET STRING
  const seq = tlv(der, next.start);
  if (seq.tag !== 0x30) return undefined;
  const first = tlv(der, seq.start);
  if (first.tag !== 0x80) return undefined; // [0] keyIdentifier
  return der.subarray(first.start, first.start + first.length);
}

/** Content octets of the serial number's DER INTEGER (a leading 00 when the high bit is set). */
export function serialDer(serialHex: string): Buffer {
  let hex = serialHex.replace(/[^0-9a-fA-F]/g, '');
  if (hex.length % 2) hex = `0${hex}`;
  let bytes = Buffer.from(hex, 'hex');
  while (bytes.length > 1 && bytes[0] === 0 && bytes[1]! < 0x80) bytes = bytes.subarray(1);
  if (bytes[0]! >= 0x80) bytes = Buffer.concat([Buffer.from([0]), bytes]);
  return bytes;
}

/** The RFC 9773 certificate ID of the leaf of `certPem`; undefined without an AKI. */
export function ariCertId(certPem: string): string | undefined {
  const der = leafDer(certPem);
  if (!der) return undefined;
  const cert = new X509Certificate(der);
  const aki = authorityKeyIdentifier(cert.raw);
  if (!aki) return undefined;
  return `${aki.toString('base64url')}.${serialDer(cert.serialNumber).toString('base64url')}`;
}

/**
 * A time in the window, the same for a name on every instance: spread over the window so that
 * a CA asking many certificates to renew at once does not get them all in the first second.
 * A window already over (or starting in the past) is "now".
 */
export function pickInWindow(domain: string, window: { start: number; end: number }, now: number): number {
  if (window.end <= now) return now;
  const at = window.start + unitHash(domain, 'ari') * Math.max(0, window.end - window.start);
  return Math.max(now, Math.round(at));
}

/** When to ask the CA again, honouring Retry-After within sane bounds. */
export function nextFetchAt(window: Pick<RenewalWindow, 'retryAfterMs'> | undefined, now: number): number {
  const ra = window?.retryAfterMs ?? ARI_DEFAULT_REFETCH_MS;
  return now + Math.min(ARI_MAX_REFETCH_MS, Math.max(ARI_MIN_REFETCH_MS, ra));
}

/** The renewalInfo answer as the CA sent it (RFC 9773 §4.2). */
export interface RenewalInfo {
  suggestedWindow: { start: string; end: string };
  explanationURL?: string;
  retryAfterMs?: number;
}

/**
 * The CA's renewal information for a certificate ID, with Retry-After; null when the directory
 * has no renewalInfo. Throws an AcmeError (step 'renewal-info') for any other failure, e.g. a 404
 * for a certificate this CA did not issue.
 */
export async function getRenewalInfo(directory: Directory, certId: string, domain?: string): Promise<RenewalInfo | null> {
  const ctx = { step: 'renewal-info', domain };
  const dir = await directory.get();
  if (typeof dir.renewalInfo !== 'string') return null;
  const res = await directory.transport.request('GET', `${dir.renewalInfo.replace(/\/$/, '')}/${certId}`, ctx);
  if (res.status !== 200) throw problemError(res, ctx);
  const info = requireJson<{ suggestedWindow?: { start?: unknown; end?: unknown }; explanationURL?: unknown }>(res, ctx);
  const { start, end } = info.suggestedWindow ?? {};
  if (typeof start !== 'string' || typeof end !== 'string') throw protocolError('renewalInfo without suggestedWindow', ctx, res.status);
  const retryAfterMs = parseRetryAfter(header(res, 'retry-after'));
  return {
    suggestedWindow: { start, end },
    ...(typeof info.explanationURL === 'string' ? { explanationURL: info.explanationURL } : {}),
    ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
  };
}

/** The CA's window for `certId` as times, or null when the directory has no renewalInfo. Throws on errors. */
export async function fetchRenewalWindow(directory: Directory, certId: string, domain?: string): Promise<RenewalWindow | null> {
  const info = await getRenewalInfo(directory, certId, domain);
  if (!info) return null;
  const start = Date.parse(info.suggestedWindow.start);
  const end = Date.parse(info.suggestedWindow.end);
  if (!Number.isFinite(start) || !Number.isFinite(end) || end < start) {
    throw new Error(`renewalInfo for ${domain ?? certId}: invalid suggestedWindow (step: ari)`);
  }
  return {
    start,
    end,
    ...(info.retryAfterMs !== undefined ? { retryAfterMs: info.retryAfterMs } : {}),
    ...(info.explanationURL ? { explanationURL: info.explanationURL } : {}),
  };
}
