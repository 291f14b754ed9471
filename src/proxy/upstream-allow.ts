// `proxy.upstreamAllow`: the addresses upstreams from the domain registry (PUT /v1/domains/{name}
// `upstream`, set by whoever holds the admin token, often a platform's panel fed by customers)
// may point at. Configured routes are the operator's own and are not checked.
//
//   1. an IP-literal upstream is checked when it is bound (admin API: 400) and before every
//      request or upgrade (502: a binding made before the list changed)
//   2. a host-name upstream is checked when it is resolved, at every re-resolution
//      (upstream-pool.ts): addresses outside the list are dropped and none left fails the request;
//      connections go to the checked addresses themselves (no DNS rebinding in between)
//   3. the gateway's own admin API (its port on a loopback or local address) is always refused
//   Unset, every address is allowed except DEFAULT_DENIED: loopback, link-local (cloud metadata
//   lives at 169.254.169.254, fd00:ec2::254), unspecified.
import { BlockList, isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import { parseCidr, plainAddress } from '../net/cidr.ts';

/** The error code of a connection refused by the allow-list (src/proxy/errors.ts maps it to 502). */
export const UPSTREAM_NOT_ALLOWED = 'UPSTREAM_NOT_ALLOWED';

/** Ranges registry upstreams may not point at when `proxy.upstreamAllow` is unset. */
export const DEFAULT_DENIED = ['127.0.0.0/8', '::1/128', '169.254.0.0/16', 'fe80::/10', '0.0.0.0/8', '::/128', 'fd00:ec2::254/128'];

function blockListOf(cidrs: readonly string[]): BlockList {
  const list = new BlockList();
  for (const text of cidrs) {
    const cidr = parseCidr(text);
    if (cidr === undefined) throw new Error(`proxy.upstreamAllow: ${JSON.stringify(text)} is not a CIDR like "10.0.0.0/8" or "2001:db8::/32"`);
    list.addSubnet(cidr.address, cidr.prefix, cidr.family);
  }
  return list;
}

/** What UpstreamAllowList checks against. */
export interface UpstreamAllowOptions {
  /** CIDRs registry upstreams must be inside; undefined: anything outside DEFAULT_DENIED. */
  allow?: readonly string[];
  /** The admin API's listen address: never an upstream. */
  admin?: { host: string; port: number };
}

/** Decides whether a registry upstream address may be connected to; see the header above. */
export class UpstreamAllowList {
  readonly #allow: BlockList | undefined;
  readonly #deny: BlockList;
  readonly #admin: { host: string; port: number } | undefined;
  readonly #describe: string;

  /** Throws when a CIDR in `allow` is malformed (the config schema checks them first). */
  constructor(opts: UpstreamAllowOptions = {}) {
    this.#allow = opts.allow === undefined ? undefined : blockListOf(opts.allow);
    this.#deny = blockListOf(DEFAULT_DENIED);
    this.#admin = opts.admin;
    this.#describe = opts.allow === undefined
      ? 'proxy.upstreamAllow is unset, which refuses loopback, link-local and unspecified addresses'
      : `proxy.upstreamAllow is [${opts.allow.join(', ')}]`;
  }

  /** Why `address:port` may not be an upstream, or undefined when it may. `address` is an IP literal. */
  refusal(address: string, port: number): string | undefined {
    const ip = plainAddress(address);
    const family = isIP(ip) === 4 ? 'ipv4' : 'ipv6';
    if (this.#isAdmin(ip, port)) return `${address}:${port} is the gateway's admin API`;
    const allowed = this.#allow ? this.#allow.check(ip, family) : !this.#deny.check(ip, family);
    return allowed ? undefined : `address ${address} is not allowed (${this.#describe})`;
  }

  #isAdmin(ip: string, port: number): boolean {
    const admin = this.#admin;
    if (admin === undefined || port !== admin.port) return false;
    if (ip.startsWith('127.') || ip === '::1' || ip === '0.0.0.0' || ip === '::') return true;
    const host = plainAddress(admin.host);
    if (ip === host) return true;
    return (host === '::' || host === '0.0.0.0') && localAddresses().has(ip);
  }
}

function localAddresses(): Set<string> {
  const out = new Set<string>();
  for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) out.add(plainAddress(a.address));
  return out;
}
