// The dns-01 solver (RFC 8555 §8.4): the challenge is a TXT record at _acme-challenge.<identifier>
// written through a DnsProvider (dns/provider.ts). One authorization's life:
//   1. present: remember the record in storage first (challenges/dns-01/<fqdn>/<value>), so a
//      crash after the provider wrote it leaves a trace the maintainer's cleanup can remove
//   2. the provider adds the value (it never replaces other values at that name)
//   3. the propagation check (dns/propagation.ts) waits until every server answers the value
//   4. cleanup (authorize.ts calls it after success and failure alike): the provider removes
//      exactly that value, then the trace goes
// Concurrent orders in one zone, and `*.name` + `name` in one order (both answer at
// _acme-challenge.name), each add and remove only their own value, so none clobbers another's.
// A cluster writes each record once: an order runs under the name's issuance lock
// (issuance/lock.ts), so one process per name presents, once per authorization.
import type { Logger } from '../util/log.ts';
import { keys } from '../storage/keys.ts';
import type { Storage } from '../storage/storage.ts';
import type { ChallengeSolver } from './authorize.ts';
import { DnsProviderError, type DnsProvider } from './dns/provider.ts';
import { waitForPropagation } from './dns/propagation.ts';
import { AcmeError, LocalErrorType } from './plumbing/errors.ts';
import { dns01TxtValue } from './plumbing/jws.ts';

/** What the dns-01 solver writes through and how long it waits for the record to propagate. */
export interface Dns01SolverOptions {
  provider: DnsProvider;
  /** Where presented records are remembered until cleaned up (shared with the maintainer). */
  storage: Storage;
  logger: Logger;
  /** acme.dns.resolvers: ask these instead of the zone's authoritative servers. */
  resolvers?: readonly string[];
  /** acme.dns.propagationTimeout in ms. */
  propagationTimeoutMs: number;
  /** First wait between propagation rounds (default 500 ms, doubling to 2 s). */
  propagationIntervalMs?: number;
  /**
   * Where the TXT of `identifier` is written; default dns01RecordName. DCV delegation
   * (dns/delegation.ts) writes at the target of the customer's CNAME instead, which the CA follows.
   */
  recordName?: (identifier: string) => string;
}

/** The name a dns-01 challenge for `identifier` (no `*.`) is answered at. */
export function dns01RecordName(identifier: string): string {
  return `_acme-challenge.${identifier.toLowerCase().replace(/\.$/, '')}`;
}

/** How long a passed provider check() is trusted before the next order checks again. */
const CHECK_TRUST_MS = 10 * 60_000;

/** dns-01 through a DnsProvider; errors are DnsProviderErrors naming the provider, the step and the name. */
export class Dns01Solver implements ChallengeSolver {
  readonly type = 'dns-01' as const;

  constructor(private readonly opts: Dns01SolverOptions) {}

  /**
   * Before an order: the provider's check() (credentials, server reachable), so a DNS host that
   * would refuse our writes costs no newOrder at the CA. A success is trusted for CHECK_TRUST_MS.
   */
  async beforeOrder(): Promise<void> {
    if (!this.opts.provider.check || Date.now() < this.checkedUntil) return;
    await this.opts.provider.check();
    this.checkedUntil = Date.now() + CHECK_TRUST_MS;
  }

  private checkedUntil = 0;

  /** The DNS host this solver writes through (the maintainer removes left-overs through it too). */
  get provider(): DnsProvider {
    return this.opts.provider;
  }

  async present(domain: string, _token: string, keyAuthorization: string, signal?: AbortSignal): Promise<void> {
    const { provider, storage, logger } = this.opts;
    const fqdn = this.recordName(domain);
    const value = dns01TxtValue(keyAuthorization);
    await storage.put(keys.dns01Record(fqdn, value), JSON.stringify({ fqdn, value, provider: provider.name, presentedAt: new Date().toISOString() }));
    await this.providerStep('present', fqdn, () => provider.present(fqdn, value));
    const started = performance.now();
    await this.providerStep('propagation', fqdn, () =>
      waitForPropagation(fqdn, value, {
        provider: provider.name,
        timeoutMs: this.opts.propagationTimeoutMs,
        ...(this.opts.resolvers ? { resolvers: this.opts.resolvers } : {}),
        ...(this.opts.propagationIntervalMs !== undefined ? { intervalMs: this.opts.propagationIntervalMs } : {}),
        ...(signal ? { signal } : {}),
      }),
    );
    logger.info({ domain, step: 'propagation', provider: provider.name, fqdn, ms: Math.round(performance.now() - started) }, 'dns-01 record answered by every server');
  }

  async cleanup(domain: string, _token: string, keyAuthorization: string): Promise<void> {
    const fqdn = this.recordName(domain);
    const value = dns01TxtValue(keyAuthorization);
    await this.providerStep('cleanup', fqdn, () => this.opts.provider.cleanup(fqdn, value));
    await this.opts.storage.delete(keys.dns01Record(fqdn, value));
  }

  private recordName(domain: string): string {
    return (this.opts.recordName ?? dns01RecordName)(domain);
  }

  /** Runs a provider call; any failure becomes a DnsProviderError whose message names provider, step and name. */
  private async providerStep(step: string, fqdn: string, op: () => Promise<void>): Promise<void> {
    const name = this.opts.provider.name;
    try {
      await op();
    } catch (err) {
      if (err instanceof Error && err.name === 'AbortError') throw err;
      const failedStep = err instanceof DnsProviderError ? err.step : step;
      const message = err instanceof Error ? err.message : String(err);
      throw new DnsProviderError(`dns provider ${name}, step ${failedStep}, ${fqdn}: ${message}`, failedStep, name, { cause: err });
    }
  }
}

/**
 * Removes a record left by a process that died between present and cleanup, given its storage
 * key (under keys.dns01Prefix): the provider removes the value, then the key goes. Throws what
 * the provider threw (the key stays, to be tried again).
 */
export async function removeLeftoverRecord(storage: Storage, provider: DnsProvider, key: string): Promise<void> {
  const rest = key.slice(keys.dns01Prefix.length);
  const slash = rest.lastIndexOf('/');
  if (!key.startsWith(keys.dns01Prefix) || slash <= 0) throw new Error(`not a dns-01 record key: ${key} (step cleanup-challenges)`);
  await provider.cleanup(rest.slice(0, slash), rest.slice(slash + 1));
  await storage.delete(key);
}

/**
 * The solvers of one order, in preference order. A wildcard can only be validated by dns-01, so
 * an order with one uses dns-01 for all its names; other orders use `configured`
 * (acme.challenges, which holds dns-01 only when listed). Throws before any order is placed when
 * a wildcard has no dns-01 solver: that order could only fail and spend the CA's limits.
 */
export function solversForOrder(domains: readonly string[], configured: ChallengeSolver[], dns01: ChallengeSolver | undefined): ChallengeSolver[] {
  const wildcard = domains.find((d) => d.startsWith('*.'));
  if (wildcard === undefined) return configured;
  if (dns01 === undefined) {
    throw new AcmeError({ type: LocalErrorType.noSolver, status: 0, detail: 'a wildcard can only be validated by dns-01: configure acme.dns', step: 'challenge', domain: wildcard });
  }
  return [dns01];
}
