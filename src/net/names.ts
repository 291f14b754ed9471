// Server names from SNI are attacker-controlled: normalise them once, strictly, before any
// cache lookup, policy call or CA request.
//
//   normalizeServerName  SNI (and Host headers): ASCII only, as RFC 6066 requires. Node hands
//                        us the SNI bytes as latin1, so raw UTF-8 arrives as mojibake that
//                        punycode would turn into a name nobody asked for: refused instead.
//   normalizeDomainName  names an operator typed (config, admin API): Unicode is accepted and
//                        converted to its A-label, then checked like SNI.
// Both check every `xn--` label (IDNA 2008 / UTS 46): it must decode as punycode and encode
// back to the same A-label; any other label with '--' in its 3rd and 4th places is refused
// (reserved by RFC 5891). Only names containing '--' pay for those checks.
import { domainToASCII, domainToUnicode } from 'node:url';

const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const PLAIN_ASCII = /^[a-zA-Z0-9.-]+$/;
// A decoded A-label must hold a character outside printable ASCII (control characters fail the
// round trip anyway: domainToASCII refuses them).
const NON_ASCII = /[^\u0020-\u007e]/u;

/**
 * A server name from SNI or a Host header, normalised: lower-case, one trailing dot stripped.
 * Returns undefined unless it is a DNS hostname a public CA could issue for: ASCII only (no
 * Unicode: clients must send A-labels), 2+ labels of [a-z0-9-] (1-63 chars, no leading/trailing
 * hyphen), at most 253 chars, not an IP address, not an all-numeric top-level label, and every
 * `xn--` label a valid A-label. Never throws. On the handshake hot path: plain names cost a few
 * regex tests.
 * IP addresses need no check of their own (node:net's isIP costs ~10 ms at its first call, on the
 * start-up path): IPv4 ends in an all-numeric label and IPv6 has ':', both refused here.
 */
export function normalizeServerName(raw: string | undefined | null): string | undefined {
  if (!raw || raw.length > 300) return undefined;
  const name = raw.endsWith('.') ? raw.slice(0, -1) : raw;
  if (!PLAIN_ASCII.test(name)) return undefined;
  return checkedName(name.toLowerCase());
}

/**
 * A name an operator wrote (config, admin API): like normalizeServerName, but a Unicode name
 * (`bücher.example`) is accepted and converted to its A-labels (`xn--bcher-kva.example`) by
 * UTS 46, as browsers do. Returns undefined for anything normalizeServerName would refuse after
 * that conversion. Never throws.
 */
export function normalizeDomainName(raw: string | undefined | null): string | undefined {
  if (!raw || raw.length > 300) return undefined;
  const name = raw.endsWith('.') ? raw.slice(0, -1) : raw;
  if (PLAIN_ASCII.test(name)) return checkedName(name.toLowerCase());
  // domainToASCII maps what WHATWG allows; these it would map or keep, and no CA takes them.
  if (name.length === 0 || /[\s/\\@:%?#*_[\]]/.test(name)) return undefined;
  const ascii = domainToASCII(name);
  return ascii === '' ? undefined : normalizeServerName(ascii);
}

/** `name` is lower-case ASCII without a trailing dot. */
function checkedName(name: string): string | undefined {
  if (name.length === 0 || name.length > 253) return undefined;
  const labels = name.split('.');
  if (labels.length < 2) return undefined;
  for (const label of labels) if (!LABEL.test(label)) return undefined;
  if (/^[0-9]+$/.test(labels[labels.length - 1]!)) return undefined;
  if (name.includes('--')) {
    // Labels with '--' in their 3rd and 4th places are reserved (RFC 5891 §4.2.3.1): only
    // `xn--` A-labels exist, and CAs refuse the rest at order time.
    for (const label of labels) if (label.startsWith('--', 2) && !(label.startsWith('xn') && isValidALabel(label))) return undefined;
  }
  return name;
}

/**
 * An `xn--` label is valid when it decodes (punycode) to a Unicode label that UTS 46 accepts and
 * that encodes back to exactly this label. Node's domainToUnicode returns undecodable labels
 * unchanged (older versions: decoded to ASCII or ''), hence the "has non-ASCII" test: a real
 * A-label always stands for a label with at least one non-ASCII character.
 */
function isValidALabel(label: string): boolean {
  const unicode = domainToUnicode(label);
  if (!NON_ASCII.test(unicode)) return false;
  return domainToASCII(unicode) === label;
}
