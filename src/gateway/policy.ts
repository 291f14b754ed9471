// The on-demand policy part: may this name have a certificate, and may this client start an
// issuance now?
//   1. the domain registry (bindings set through the admin API), on the cluster bus
//   2. the DNS ownership check (`onDemand.dns`), when configured
//   3. the policy: registry (when `onDemand.registry`), allow patterns, ask endpoint, then DNS
//   3b. ownership verification (`onDemand.ownership`): the registry gives bindings tokens and
//       refuses them until their TXT record is seen (checked by the admin API and the maintainer)
//   4. the abuse limits (`onDemand.limits`): token buckets per client and per process
// Each piece takes its config section as parsed; the registry leaves the bus on close.
// reconfigurePolicy() applies a reloaded config's allow, ask and limit rates.
import type { Config } from '../config/schema.ts';
import type { Logger } from '../util/log.ts';
import { DnsOwnershipCheck } from '../policy/dns.ts';
import { OwnershipVerifier } from '../policy/ownership.ts';
import { IssuanceLimits, type LimitScope } from '../issuance/limits.ts';
import { OnDemandPolicy } from '../policy/policy.ts';
import { DomainRegistry } from '../policy/registry.ts';
import type { ClusterBus } from '../storage/bus.ts';
import type { Storage } from '../storage/storage.ts';

/** The policy part's pieces; the gateway exposes them as Gateway.policy/registry/limits. */
export interface PolicyPart {
  readonly registry: DomainRegistry;
  readonly policy: OnDemandPolicy;
  readonly limits: IssuanceLimits;
  /** The DNS ownership check (`onDemand.dns`), when configured: also tells the admin API whether a name points here. */
  readonly dns: DnsOwnershipCheck | undefined;
  /** Ownership verification (`onDemand.ownership`), when configured. */
  readonly ownership: OwnershipVerifier | undefined;
}

/** What the policy part works with: storage and bus are opened (and closed) by the gateway. */
export interface PolicyPartDeps {
  storage: Storage;
  bus: ClusterBus;
  logger: Logger;
  /** Observes every rate-limit rejection (metrics). */
  onLimited?: (scope: LimitScope) => void;
}

/** Builds the policy part; what it opens is closed by `stack` (the registry's bus subscription). */
export async function assemblePolicy(config: Config, deps: PolicyPartDeps, stack: AsyncDisposableStack): Promise<PolicyPart> {
  const { storage, bus, logger } = deps;
  const onDemand = config.onDemand;
  const ownership = onDemand.ownership ? new OwnershipVerifier(onDemand.ownership, onDemand.dns?.resolvers ?? [], { logger }) : undefined;
  const registry = new DomainRegistry({ storage, logger, ...(ownership ? { ownershipToken: OwnershipVerifier.newToken } : {}) });
  await registry.attachBus(bus);
  stack.defer(() => registry.close());
  const dns = onDemand.dns ? new DnsOwnershipCheck({ dns: onDemand.dns, limits: onDemand.limits }, { logger }) : undefined;
  const policy = new OnDemandPolicy(onDemand, {
    logger,
    ...(onDemand.registry ? { registry } : {}),
    ...(dns ? { dns } : {}),
  });
  const limits = new IssuanceLimits(onDemand.limits, { logger, ...(deps.onLimited ? { onLimited: deps.onLimited } : {}) });
  return { registry, policy, limits, dns, ownership };
}

/**
 * A reloaded config (SIGHUP): `onDemand.allow`, `ask` and its timings, and the `limits` rates
 * apply from the next decision. The DNS check and the registry switch need a restart.
 */
export function reconfigurePolicy(part: PolicyPart, config: Pick<Config, 'onDemand'>): void {
  part.policy.reconfigure(config.onDemand);
  part.limits.reconfigure(config.onDemand.limits);
}
