// Server names from SNI are attacker-controlled: normalise them once, strictly, before any
// cache lookup, policy call or CA request.
import { domainToASCII } from 'node:url';

const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * Lowercase, strip one trailing dot, IDN to punycode, then require a DNS hostname a public CA
 * could issue for: 2+ labels of [a-z0-9-] (1-63 chars, no leading/trailing hyphen), at most 253
 * chars, not an IP address, not an all-numeric top-level label. Returns undefined otherwise.
 * IP addresses need no check of their own (node:net's isIP costs ~10 ms at its first call, on the
 * start-up path): IPv4 ends in an all-numeric label, IPv6 has ':' (refused below), and so does
 * anything domainToASCII could turn into an address.
 */
export function normalizeServerName(raw: string | undefined | null): string | undefined {
  if (!raw || raw.length > 300) return undefined;
  let name = raw.endsWith('.') ? raw.slice(0, -1) : raw;
  if (name.length === 0 || name.startsWith('[')) return undefined;
  // Fast path for plain ASCII names; domainToASCII handles IDN (and rejects what WHATWG forbids).
  if (!/^[a-zA-Z0-9.-]+$/.test(name)) {
    if (/[\s/\\@:%?#*_]/.test(name)) return undefined;
    name = domainToASCII(name);
    if (name === '') return undefined;
  }
  name = name.toLowerCase();
  if (name.length > 253) return undefined;
  const labels = name.split('.');
  if (labels.length < 2) return undefined;
  for (const label of labels) if (!LABEL.test(label)) return undefined;
  if (/^[0-9]+$/.test(labels[labels.length - 1]!)) return undefined;
  return name;
}
