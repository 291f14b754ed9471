// DNS ownership check (`onDemand.dns`): a name is issued for only when it already points at
// this platform, so a customer's half-finished DNS change never turns into a failed CA order.
// It points at us when its CNAME chain reaches a target host name, or when the addresses it
// resolves to are targets (IP targets, or the addresses of host-name targets).
//
// Answers are cached: positive for `cacheTtl`, negative for `negativeCacheTtl`. When the
// resolvers fail (time-out, SERVFAIL, refused), a positive answer up to `staleFor` past its
// expiry is still used, so a resolver outage does not stop issuance for names we already
// checked. Concurrent checks of one name share one lookup. Memory is bounded (LRU).
import type { Resolver } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { DnsCheckConfig, LimitsConfig } from '../config/schema.ts';
import type { Logger } from '../util/log.ts';
import { LruCache } from '../util/lru.ts';
import { answerOf, createResolver } from '../net/resolver.ts';

/**
 * The check's answer: the name points at us (`via` says how), or why not. `resolved` (when the
 * lookup got that far) is what the name resolved to: `CNAME <target>` links, then addresses.
 */
export type DnsVerdict = { ok: true; via: string; resolved?: string[] } | { ok: false; reason: string; resolved?: string[] };

/**
 * `onDemand.dns` as parsed (`targets`: IP addresses and/or host names; `resolvers`: empty means
 * the system's; `cacheTtl`/`negativeCacheTtl`: how long answers are kept; `staleFor`: how long
 * past expiry a positive answer is used while the resolvers fail; `timeout`: one query), plus
 * `limits.unknownNameCache`, the most names whose answers are kept (LRU).
 */
export interface DnsCheckSection {
  dns: DnsCheckConfig;
  limits: Pick<LimitsConfig, 'unknownNameCache'>;
}

/** What the check works with besides its config. */
export interface DnsCheckDeps {
  logger: Logger;
}

interface CachedVerdict {
  verdict: DnsVerdict;
  freshUntil: number;
}

/** Longest CNAME chain followed; real chains are one or two links. */
const MAX_CNAME_LINKS = 8;
/** Resolver errors that say nothing about the name itself: keep using a stale positive answer. */
const RESOLVER_FAILURES = new Set(['ETIMEOUT', 'ESERVFAIL', 'ECONNREFUSED', 'EREFUSED', 'ECANCELLED', 'EBADRESP', 'ECONNRESET', 'EFORMERR']);

/**
 * The DNS ownership check of the header. check() never rejects: a lookup that fails (and has no
 * stale positive answer) is a negative verdict.
 */
export class DnsOwnershipCheck {
  private readonly resolver: Resolver;
  private readonly targetIps: Set<string>;
  private readonly targetHosts: Set<string>;
  private readonly cache: LruCache<string, CachedVerdict>;
  private readonly pending = new Map<string, Promise<DnsVerdict>>();
  /** Addresses of host-name targets: a handful of entries, refreshed like any answer. */
  private readonly hostAddresses = new Map<string, { addresses: string[]; freshUntil: number; staleUntil: number }>();
  private readonly match: 'all' | 'any';
  private readonly config: DnsCheckConfig;

  constructor(
    { dns, limits }: DnsCheckSection,
    private readonly deps: DnsCheckDeps,
  ) {
    this.config = dns;
    this.resolver = createResolver(dns.resolvers, { timeoutMs: dns.timeout });
    this.targetIps = new Set(dns.targets.filter((t) => isIP(t) !== 0).map(canonicalIp));
    this.targetHosts = new Set(dns.targets.filter((t) => isIP(t) === 0).map((t) => t.toLowerCase().replace(/\.$/, '')));
    this.cache = new LruCache(limits.unknownNameCache);
    this.match = dns.match;
  }

  /** `name` must be normalised (see tls/names.ts). Never throws: errors fail the check. */
  async check(name: string, now = Date.now()): Promise<DnsVerdict> {
    const cached = this.cache.get(name, now);
    if (cached && cached.freshUntil > now) return cached.verdict;
    let inflight = this.pending.get(name);
    if (!inflight) {
      inflight = this.refresh(name, cached).finally(() => this.pending.delete(name));
      this.pending.set(name, inflight);
    }
    return inflight;
  }

  /** The configured targets (IP addresses and host names), as a status page names them. */
  get targets(): readonly string[] {
    return this.config.targets;
  }

  /** Forget cached answers (all, or one name), e.g. after the platform says DNS changed. */
  forget(name?: string): void {
    if (name === undefined) this.cache.clear();
    else this.cache.delete(name);
  }

  private async refresh(name: string, previous: CachedVerdict | undefined): Promise<DnsVerdict> {
    const started = performance.now();
    const { logger } = this.deps;
    let verdict: DnsVerdict;
    try {
      verdict = await this.lookup(name);
    } catch (err) {
      const code = (err as { code?: string }).code ?? (err as Error).message;
      // Only a stale *positive* answer is kept (still within staleMs: the LRU entry lives that long).
      if (previous?.verdict.ok && RESOLVER_FAILURES.has(code)) {
        logger.warn({ domain: name, step: 'dns-check', err: code, staleSinceMs: Date.now() - previous.freshUntil }, 'DNS resolvers failed: using the last positive answer');
        return previous.verdict;
      }
      verdict = { ok: false, reason: `DNS lookup failed: ${code}` };
    }
    const ms = Math.round(performance.now() - started);
    logger.info({ domain: name, step: 'dns-check', ok: verdict.ok, ...(verdict.ok ? { via: verdict.via } : { reason: verdict.reason }), ms }, 'DNS ownership checked');
    const now = Date.now();
    if (verdict.ok) {
      this.cache.set(name, { verdict, freshUntil: now + this.config.cacheTtl }, this.config.cacheTtl + this.config.staleFor, now);
    } else {
      this.cache.set(name, { verdict, freshUntil: now + this.config.negativeCacheTtl }, this.config.negativeCacheTtl, now);
    }
    return verdict;
  }

  /** Throws only for resolver failures (see RESOLVER_FAILURES); "no such name" is a verdict. */
  private async lookup(name: string): Promise<DnsVerdict> {
    if (this.targetHosts.has(name)) return { ok: true, via: `target ${name}` };

    const chain: string[] = [];
    if (this.targetHosts.size > 0) {
      let current = name;
      for (let link = 0; link < MAX_CNAME_LINKS; link++) {
        const next = (await answerOf(this.resolver.resolveCname(current)))[0]?.toLowerCase().replace(/\.$/, '');
        if (!next) break;
        chain.push(`CNAME ${next}`);
        if (this.targetHosts.has(next)) return { ok: true, via: `CNAME ${next}`, resolved: chain };
        current = next;
      }
    }

    // The recursive answer for A/AAAA already follows CNAMEs.
    const [v4, v6] = await Promise.all([answerOf(this.resolver.resolve4(name)), answerOf(this.resolver.resolve6(name))]);
    const addresses = [...new Set([...v4, ...v6].map(canonicalIp))];
    if (addresses.length === 0) return { ok: false, reason: 'name does not resolve (no A/AAAA/CNAME records)', resolved: chain };

    const ours = await this.targetAddresses();
    const matching = addresses.filter((a) => ours.has(a));
    const passes = this.match === 'all' ? matching.length === addresses.length : matching.length > 0;
    const resolved = [...chain, ...addresses];
    if (passes) return { ok: true, via: `address ${matching.join(', ')}`, resolved };
    const elsewhere = addresses.filter((a) => !ours.has(a));
    return { ok: false, reason: `name resolves to ${elsewhere.slice(0, 4).join(', ')}, not to a configured target`, resolved };
  }

  /** IP targets plus the current addresses of host-name targets (themselves cached as names). */
  private async targetAddresses(): Promise<Set<string>> {
    if (this.targetHosts.size === 0) return this.targetIps;
    const all = new Set(this.targetIps);
    for (const host of this.targetHosts) {
      for (const address of await this.addressesOf(host)) all.add(address);
    }
    return all;
  }

  private async addressesOf(host: string): Promise<string[]> {
    const now = Date.now();
    const known = this.hostAddresses.get(host);
    if (known && known.freshUntil > now) return known.addresses;
    try {
      const [v4, v6] = await Promise.all([answerOf(this.resolver.resolve4(host)), answerOf(this.resolver.resolve6(host))]);
      const addresses = [...new Set([...v4, ...v6].map(canonicalIp))];
      this.hostAddresses.set(host, { addresses, freshUntil: now + this.config.cacheTtl, staleUntil: now + this.config.cacheTtl + this.config.staleFor });
      return addresses;
    } catch (err) {
      if (known && known.staleUntil > now) return known.addresses;
      throw err;
    }
  }
}

/** One spelling per address, so '::ffff:1.2.3.4' style and case differences compare equal. */
function canonicalIp(ip: string): string {
  const lower = ip.toLowerCase();
  if (lower.startsWith('::ffff:') && isIP(lower.slice(7)) === 4) return lower.slice(7);
  if (isIP(lower) === 6) {
    try {
      return new URL(`http://[${lower}]/`).hostname.slice(1, -1);
    } catch {
      return lower;
    }
  }
  return lower;
}
