// CAA (RFC 8659) as a hostname-status check: would the name's CAA records let any configured CA
// issue? The relevant record set is the first one found climbing from the name towards the root
// (the name, then each parent; the recursive resolver follows CNAMEs). Nothing here stops an
// order: the CA checks CAA itself; this only tells a panel why issuance will fail.
//
// A CA's CAA identity comes from a table of public ACME CAs (by directory host); a CA not in it
// (a private or test CA) is `unknown` unless the records forbid every CA (`issue ";"`).
import type { Resolver } from 'node:dns/promises';
import { answerOf } from '../net/resolver.ts';

/** One CAA record as found. */
export interface CaaRecord {
  /** The name that holds it (the name itself or a parent). */
  at: string;
  flags: number;
  tag: string;
  value: string;
}

/** What the check found: the relevant records, the configured CAs they forbid, and CAs it cannot judge. */
export interface CaaVerdict {
  records: CaaRecord[];
  /** CA ids the records forbid; every configured CA listed here means no order can succeed. */
  forbids: string[];
  /** CA ids whose CAA identity is not known (not judged), when records restrict issuance. */
  unknown: string[];
}

/** A configured CA: its storage id and directory URL. */
export interface CaIdentity {
  ca: string;
  directory: string;
}

/** CAA identities of public ACME CAs, by the directory URL's host suffix. */
const KNOWN_IDENTITIES: ReadonlyArray<[string, string]> = [
  ['api.letsencrypt.org', 'letsencrypt.org'],
  ['acme.zerossl.com', 'sectigo.com'],
  ['dv.acme-v02.api.pki.goog', 'pki.goog'],
  ['api.buypass.com', 'buypass.com'],
  ['acme.ssl.com', 'ssl.com'],
];

/** The CAA identity of a CA's directory, or undefined when it is not a known public CA. */
export function caaIdentity(directory: string): string | undefined {
  const host = new URL(directory).hostname;
  return KNOWN_IDENTITIES.find(([suffix]) => host === suffix || host.endsWith(`.${suffix}`))?.[1];
}

/**
 * The CAA verdict for `name` (a `*.` wildcard uses `issuewild` when present). Rejects when the
 * resolver fails (time-out, SERVFAIL): the caller says the check could not run.
 */
export async function checkCaa(resolver: Resolver, name: string, cas: readonly CaIdentity[]): Promise<CaaVerdict> {
  const wildcard = name.startsWith('*.');
  const labels = (wildcard ? name.slice(2) : name).split('.');
  for (let i = 0; i < labels.length - 1; i++) {
    const at = labels.slice(i).join('.');
    const found = await answerOf(resolver.resolveCaa(at));
    if (found.length === 0) continue;
    const records = found.map((r) => {
      // node:dns gives { critical, issue: 'ca.example' } (some versions add type: 'CAA').
      const [tag, value] = Object.entries(r).find(([key]) => key !== 'critical' && key !== 'type') ?? ['', ''];
      return { at, flags: r.critical, tag, value: String(value) };
    });
    return judge(records, wildcard, cas);
  }
  return { records: [], forbids: [], unknown: [] };
}

/** RFC 8659 section 4: `issuewild` rules wildcards when present; no issue tags at all: anyone may issue. */
function judge(records: CaaRecord[], wildcard: boolean, cas: readonly CaIdentity[]): CaaVerdict {
  const wild = records.filter((r) => r.tag === 'issuewild');
  const issue = wildcard && wild.length > 0 ? wild : records.filter((r) => r.tag === 'issue');
  if (issue.length === 0) return { records, forbids: [], unknown: [] };
  // The issuer domain is the value up to its first ';' (parameters follow); empty: nobody.
  const allowed = new Set(issue.map((r) => r.value.split(';')[0]!.trim().toLowerCase()).filter((v) => v !== ''));
  const forbids: string[] = [];
  const unknown: string[] = [];
  for (const { ca, directory } of cas) {
    const identity = caaIdentity(directory);
    if (allowed.size === 0 || (identity !== undefined && !allowed.has(identity))) forbids.push(ca);
    else if (identity === undefined) unknown.push(ca);
  }
  return { records, forbids, unknown };
}
