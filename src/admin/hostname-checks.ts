// The network checks behind a hostname's `verification`, run at bind and on
// GET /v1/domains/{name}?check=true, never for a list:
//   1. DNS: the onDemand.dns check afresh (its cached answer and the cached policy decisions
//      forgotten first, so a fixed record counts at once, for the next handshake too)
//   2. CAA: the relevant record set (policy/caa.ts) against the configured CAs
//   3. ownership: the binding's TXT record; once seen, the registry records it (policy approves)
// All three run at once, each bounded by its resolver time-out. Results are kept in memory (LRU)
// on the instance that ran them; another instance shows them after its own check.
import type { Resolver } from 'node:dns/promises';
import type { Logger } from '../util/log.ts';
import { LruCache } from '../util/lru.ts';
import { checkCaa, type CaIdentity } from '../policy/caa.ts';
import type { DnsOwnershipCheck } from '../policy/dns.ts';
import type { OwnershipVerifier } from '../policy/ownership.ts';
import type { DomainBinding, DomainRegistry } from '../policy/registry.ts';
import type { CheckContext, CheckResults } from './hostname-status.ts';

/** What the checks use; each absent check is not run. */
export interface HostnameCheckDeps {
  registry: DomainRegistry;
  logger: Logger;
  /** onDemand.dns, when configured. */
  dns?: DnsOwnershipCheck | undefined;
  /** onDemand.ownership, when configured. */
  ownership?: OwnershipVerifier | undefined;
  /** The resolver CAA is asked with and the configured CAs it is judged against. */
  caa?: { resolver: Resolver; cas: readonly CaIdentity[] } | undefined;
  /** Forgets the name's cached policy decisions (the policy's and the certificate manager's). */
  forgetDecision?: (name: string) => void;
  /** Names whose last results are kept; default 10,000. */
  cacheSize?: number;
}

/** The checks of the header; run() never rejects for a DNS problem (it is a result). */
export class HostnameChecks {
  private readonly results: LruCache<string, CheckResults>;
  /** What describeHostname needs to know of the configuration. */
  readonly context: CheckContext;

  constructor(private readonly deps: HostnameCheckDeps) {
    this.results = new LruCache(deps.cacheSize ?? 10_000);
    const ownership = deps.ownership;
    this.context = { dnsTargets: deps.dns ? deps.dns.targets : null, ownershipRecord: ownership ? (name, token) => ownership.record(name, token) : null };
  }

  /** The last results this instance holds for `name` (no network). */
  last(name: string): CheckResults | undefined {
    return this.results.get(name);
  }

  /** Steps 1-3 now; returns the binding as it is afterwards (ownership may have been verified). */
  async run(binding: DomainBinding): Promise<{ binding: DomainBinding; results: CheckResults }> {
    const { dns, ownership, caa, registry } = this.deps;
    const name = binding.name;
    const started = performance.now();
    this.deps.forgetDecision?.(name);
    const [dnsVerdict, caaVerdict, proof] = await Promise.all([
      dns && !name.startsWith('*.') ? (dns.forget(name), dns.check(name)) : undefined,
      caa ? checkCaa(caa.resolver, name, caa.cas).catch((err: unknown) => ({ error: `CAA lookup failed: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` })) : undefined,
      ownership ? ownership.verify(registry, binding) : undefined,
    ]);
    const results: CheckResults = {
      at: new Date().toISOString(),
      ...(dnsVerdict ? { dns: dnsVerdict } : {}),
      ...(caaVerdict ? { caa: caaVerdict } : {}),
      ...(proof?.result ? { ownership: proof.result } : {}),
    };
    this.results.set(name, results);
    this.deps.logger.info({ domain: name, step: 'hostname-check', dns: dnsVerdict?.ok, caaForbids: caaVerdict && 'forbids' in caaVerdict ? caaVerdict.forbids : undefined, ownership: proof?.result?.seen, ms: Math.round(performance.now() - started) }, 'hostname checks run');
    return { binding: proof?.binding ?? binding, results };
  }

  /** Forgets a name's results (it was unbound). */
  forget(name: string): void {
    this.results.delete(name);
  }
}
