// Ownership verification (`onDemand.ownership`): a name bound in the registry is approved only
// once its owner has published the binding's token, `<prefix>.<name> TXT <token>`, so a name that
// still points at the platform after its owner left cannot be re-bound and issued by someone else.
//   1. token: random, made at bind (the registry keeps it on re-PUT)
//   2. check: one TXT lookup of `<prefix>.<name>` (a wildcard binding's: of its base name)
//   3. verify: seen once → the binding records verifiedAt (the registry announces it; policy then approves)
//   4. re-check: the maintainer leader pages through the pending names, a bounded number per tick
// Resolvers: `onDemand.ownership.resolvers` when set, else `onDemand.dns.resolvers`, else the system's.
import { randomBytes } from 'node:crypto';
import type { Resolver } from 'node:dns/promises';
import type { OwnershipConfig } from '../config/schema.ts';
import type { Logger } from '../util/log.ts';
import { answerOf, createResolver } from '../net/resolver.ts';
import type { DomainBinding, DomainRegistry } from './registry.ts';

/** What check() found: the token was seen, or not (and what TXT values were there, or why the lookup failed). */
export type OwnershipResult = { seen: true } | { seen: false; found: string[]; reason: string };

/** The record a binding's owner creates: `name` TXT `value`. */
export interface OwnershipRecord {
  name: string;
  type: 'TXT';
  value: string;
}

/** The pending names one re-check pass looks at, at most (the rest wait for the next pass). */
const RECHECK_BATCH = 100;

/** The ownership verification of the header; check() never rejects. */
export class OwnershipVerifier {
  private readonly resolver: Resolver;
  /** Where the periodic re-check continues (it wraps around at the end of the pending list). */
  private recheckAfter: string | undefined;

  /** `config`: onDemand.ownership as parsed; `fallbackResolvers`: onDemand.dns.resolvers (or none). */
  constructor(
    private readonly config: OwnershipConfig,
    fallbackResolvers: readonly string[],
    private readonly deps: { logger: Logger },
  ) {
    const servers = config.resolvers.length > 0 ? config.resolvers : fallbackResolvers;
    this.resolver = createResolver(servers, { timeoutMs: config.timeout });
  }

  /** A fresh token for a new binding (24 random bytes, base64url: fits a TXT string, no quoting). */
  static newToken(): string {
    return randomBytes(24).toString('base64url');
  }

  /** The TXT record the owner of `name` must create (a wildcard's is at its base name). */
  record(name: string, token: string): OwnershipRecord {
    const base = name.startsWith('*.') ? name.slice(2) : name;
    return { name: `${this.config.prefix}.${base}`, type: 'TXT', value: token };
  }

  /** Step 2: whether `token` is among the TXT values of the record's name now. Never rejects. */
  async check(name: string, token: string): Promise<OwnershipResult> {
    const record = this.record(name, token);
    try {
      const found = (await answerOf(this.resolver.resolveTxt(record.name))).map((chunks) => chunks.join(''));
      if (found.includes(token)) return { seen: true };
      return { seen: false, found, reason: found.length ? `TXT ${record.name} holds other values` : `no TXT record at ${record.name}` };
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      return { seen: false, found: [], reason: `TXT lookup of ${record.name} failed: ${code}` };
    }
  }

  /**
   * Steps 2-3 for one binding: checks its token and, once seen, records it as verified. Returns
   * the binding as it is now and the check's result (null: no token, or already verified).
   */
  async verify(registry: DomainRegistry, binding: DomainBinding): Promise<{ binding: DomainBinding; result: OwnershipResult | null }> {
    const ownership = binding.ownership;
    if (!ownership || ownership.verifiedAt) return { binding, result: null };
    const result = await this.check(binding.name, ownership.token);
    this.deps.logger.info({ domain: binding.name, step: 'ownership-check', seen: result.seen, ...(result.seen ? {} : { reason: result.reason }) }, 'ownership TXT record checked');
    if (!result.seen) return { binding, result };
    return { binding: (await registry.markOwnershipVerified(binding.name)) ?? binding, result };
  }

  /**
   * Step 4, one pass: checks the next RECHECK_BATCH pending names (continuing where the last pass
   * stopped). For the maintainer leader; rejects only when storage cannot be read.
   */
  async recheckPending(registry: DomainRegistry): Promise<void> {
    const names = await registry.pendingOwnership({ ...(this.recheckAfter ? { after: this.recheckAfter } : {}), limit: RECHECK_BATCH });
    this.recheckAfter = names.length === RECHECK_BATCH ? names[names.length - 1] : undefined;
    for (const name of names) {
      const binding = await registry.get(name);
      if (binding) await this.verify(registry, binding);
    }
  }
}
