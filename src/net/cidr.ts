// CIDRs as the config writes them ('10.0.0.0/8', '2001:db8::/32', or a bare address).
import { BlockList, isIP } from 'node:net';

/** A parsed CIDR ('10.0.0.0/8', '2001:db8::/32'; a bare address is a /32 or /128). */
export interface Cidr {
  address: string;
  prefix: number;
  family: 'ipv4' | 'ipv6';
}

/** Parse a CIDR or a bare IP address; undefined when it is neither. */
export function parseCidr(text: string): Cidr | undefined {
  const [address = '', prefixText, ...rest] = text.trim().split('/');
  const version = isIP(address);
  if (version === 0 || rest.length > 0) return undefined;
  const max = version === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? max : /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : NaN;
  if (!(prefix >= 0 && prefix <= max)) return undefined;
  return { address, prefix, family: version === 4 ? 'ipv4' : 'ipv6' };
}

/** '::ffff:127.0.0.1' → '127.0.0.1' (an IPv4-mapped address is the IPv4 host); other addresses lower-cased. */
export function plainAddress(address: string): string {
  const lower = address.toLowerCase();
  return lower.startsWith('::ffff:') && isIP(lower.slice(7)) === 4 ? lower.slice(7) : lower;
}

/** A set of CIDRs to test addresses against (IPv4-mapped IPv6 addresses count as IPv4). */
export class CidrSet {
  readonly #list = new BlockList();
  /** How many CIDRs it holds; 0 matches nothing. */
  readonly size: number;

  /** Throws, naming `key` (the config key they came from), when an entry is not a CIDR. */
  constructor(cidrs: readonly string[], key: string) {
    for (const text of cidrs) {
      const cidr = parseCidr(text);
      if (cidr === undefined) throw new Error(`${key}: ${JSON.stringify(text)} is not a CIDR like "10.0.0.0/8" or "2001:db8::/32"`);
      this.#list.addSubnet(cidr.address, cidr.prefix, cidr.family);
    }
    this.size = cidrs.length;
  }

  /** True when `address` (an IP literal; anything else is false) is inside one of the CIDRs. */
  has(address: string | undefined): boolean {
    if (address === undefined || this.size === 0) return false;
    const ip = plainAddress(address);
    const version = isIP(ip);
    return version !== 0 && this.#list.check(ip, version === 4 ? 'ipv4' : 'ipv6');
  }
}
