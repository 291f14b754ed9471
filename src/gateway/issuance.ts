// The issuance part: who obtains certificates, and what every attempt must pass.
//   1. the challenge solvers (`acme.challenges`): http-01, tls-alpn-01 on shared storage; dns-01
//      through the DNS provider (`acme.dns`), listed or not, since wildcards need it
//   2. the issuers (`acme.issuers`, first preferred), each trusting its configured roots
//   3. the CA rate-limit budgets (`acme.budgets`; by default Let's Encrypt's, for its CAs only)
//   4. the pre-flight check (`onDemand.preflight`) and its responder (every instance answers)
//   5. the memory cache (`tls.cacheSize`) and the certificate manager, on the cluster bus, with
//      the stored-names filter (issuance/stored-names.ts), listed once the listeners listen
//   6. the maintainer (renewal, cleanup), not on `role: edge`; the gateway starts it last
//   7. a binding change (here or on another instance) makes policy and manager decide afresh
//   9. DCV delegation (`acme.dns.delegation`): an order for a registry-bound name (or wildcard)
//      whose `_acme-challenge` CNAME points into the delegation zone validates by dns-01 there
//      (the TXT at the CNAME's target), wherever its A/AAAA points; a name an active wildcard
//      binding covers is served that binding's certificate
//   8. the managed certificates (`certificates`): loaded from storage before serving; missing
//      ones ordered in the background under the issuance lock (one order per cluster), not on
//      `role: edge`, once the gateway calls orderManaged() after its listeners listen (an order
//      placed before would have its http-01/tls-alpn-01 validation refused and fail); failed
//      orders are retried when the name's backoff ends
import { readFile } from 'node:fs/promises';
import type { ChallengeSolver } from '../acme/authorize.ts';
import type { AcmeIssuer } from '../acme/issuer.ts';
import { createIssuers, type IssuerSpec } from '../acme/issuers.ts';
import type { DnsProvider } from '../acme/dns/provider.ts';
import { Dns01Solver } from '../acme/dns01.ts';
import { DcvDelegation } from '../acme/dns/delegation.ts';
import type { AdminDcv } from '../admin/server.ts';
import { createDnsProvider } from '../acme/dns/providers.ts';
import { Http01Solver, TlsAlpn01Solver } from '../acme/solvers.ts';
import type { Config, IssuerConfig } from '../config/schema.ts';
import type { Logger } from '../util/log.ts';
import { Maintainer } from '../maintain/maintainer.ts';
import { isLetsEncrypt, LETS_ENCRYPT_BUDGETS, RateBudgets } from '../issuance/budgets.ts';
import { Preflight, PreflightResponder } from '../issuance/preflight.ts';
import type { ClusterBus } from '../storage/bus.ts';
import type { Storage } from '../storage/storage.ts';
import { CertificateCache } from '../tls/cache.ts';
import { CacheSync } from '../tls/cache-sync.ts';
import { CertificateManager } from '../issuance/manager.ts';
import { ManagedCertificates, type SolversFor } from '../issuance/managed.ts';
import { StoredNames } from '../issuance/stored-names.ts';
import type { PolicyPart } from './policy.ts';

/** The issuer list (`acme.issuers` in order), each with its production and optional staging CA. */
export type IssuerList = ReturnType<typeof createIssuers>;

/** The issuance part's pieces. The maintainer is built, not started (start it once serving). */
export interface IssuancePart {
  readonly issuers: IssuerList;
  /** The preferred issuer's production CA. */
  readonly issuer: AcmeIssuer;
  readonly budgets: RateBudgets;
  readonly cache: CertificateCache;
  readonly manager: CertificateManager;
  /** The managed certificates (`certificates`), served ahead of on-demand logic. */
  readonly managed: ManagedCertificates;
  readonly maintainer: Maintainer | undefined;
  /** Answers http-01 challenges on the HTTP listener; null when http-01 is not configured. */
  readonly http01: Http01Solver | null;
  /** Answers tls-alpn-01 handshakes; null when tls-alpn-01 is not configured. */
  readonly tlsAlpn: TlsAlpn01Solver | null;
  /** Answers pre-flight probes on the HTTP listener, whichever instance placed the token. */
  readonly preflightResponder: PreflightResponder;
  /** DCV delegation for the admin API; undefined without `acme.dns.delegation`. */
  readonly dcv: AdminDcv | undefined;
  /**
   * Orders the managed certificates storage did not have (step 8), in the background, and
   * starts listing the stored names (step 5) off the start's critical path. Call it once the
   * listeners listen: the CA validates against them.
   */
  orderManaged(): void;
}

/** What the issuance part works with: storage and bus are opened (and closed) by the gateway. */
export interface IssuancePartDeps {
  storage: Storage;
  bus: ClusterBus;
  logger: Logger;
  policy: PolicyPart;
  /** Writes dns-01 records (needs acme.dns); see GatewayOptions.dnsProvider. */
  dnsProvider?: DnsProvider | undefined;
}

/** Builds the issuance part; the manager's bus subscription and its work are closed by `stack`. */
export async function assembleIssuance(config: Config, deps: IssuancePartDeps, stack: AsyncDisposableStack): Promise<IssuancePart> {
  const { storage, logger, policy } = deps;
  const http01 = config.acme.challenges.includes('http-01') ? new Http01Solver(storage, logger) : null;
  const tlsAlpn = config.acme.challenges.includes('tls-alpn-01') ? new TlsAlpn01Solver(storage, logger) : null;
  const dns01 = dns01Solver(config, deps);
  const byType = { 'http-01': http01, 'tls-alpn-01': tlsAlpn, 'dns-01': dns01 };
  const solvers = config.acme.challenges.map((type): ChallengeSolver => byType[type]!);
  const issuers = createIssuers({ ...config.acme, issuers: await readIssuerRoots(config.acme.issuers) }, { solvers, dns01, storage, logger });
  // Each CA's connection pool (made at its first request) closes with the gateway.
  stack.defer(() => Promise.all(issuers.flatMap((i) => [i.production.close(), i.staging?.close()])).then(() => undefined));
  const budgets = rateBudgets(config, issuers, storage, logger);
  const preflightResponder = new PreflightResponder(storage, logger);
  const preflight = config.onDemand.preflight === false ? undefined : new Preflight(config.onDemand.preflight, { logger }, preflightResponder);
  const cache = new CertificateCache(config.tls.cacheSize, config.tls.contextCacheSize);
  const managed = new ManagedCertificates(config.certificates, cache, managedSolvers(solvers, dns01));
  const delegated = delegatedSolvers(config, deps, dns01);
  const storedNames = new StoredNames({ storage, logger });
  stack.defer(() => storedNames.close());
  let maintainer: Maintainer | undefined;
  const manager = new CertificateManager(config, {
    storage,
    issuer: issuers[0]!.production,
    issuers,
    budgets,
    ...(preflight ? { preflight } : {}),
    policy: policy.policy,
    cache: managed,
    managed,
    logger,
    limits: policy.limits,
    storedNames,
    ...(delegated ? { solversFor: delegated.solversFor, wildcardFor: (domain: string) => policy.registry.wildcardCovering(domain) } : {}),
    // A handshake that loads a certificate inside its renewal time starts the renewal (not on edges).
    onStorageLoad: (bundle) => maintainer?.onCertificateLoaded(bundle),
  });
  // Every instance's memory follows what any of them renews, replaces or deletes.
  const cacheSync = new CacheSync({ cache: managed, manager, logger, storedNames });
  await cacheSync.attach(deps.bus);
  stack.defer(() => cacheSync.close());
  if (config.role !== 'edge') maintainer = createMaintainer(config, manager, issuers, policy, deps, managed, dns01?.provider);
  forgetOnBindingChange(policy, manager, cache);
  const orderManaged = await startManaged(managed, manager, { order: config.role !== 'edge', logger }, stack);
  const dcv = delegated ? dcvSupport(delegated.delegation, policy, preflight) : undefined;
  // The stored-names listing starts with the managed orders, off the start's critical path.
  const afterListening = (): void => {
    orderManaged();
    storedNames.start();
  };
  return { issuers, issuer: issuers[0]!.production, budgets, cache, manager, managed, maintainer, http01, tlsAlpn, preflightResponder, dcv, orderManaged: afterListening };
}

/**
 * The solvers of a managed certificate's order: with acme.dns configured, dns-01 (issue 15: managed
 * certificates use it without listing it in acme.challenges); without it, the configured
 * `acme.challenges` ones for plain names, and none for wildcards (the config refuses those).
 */
function managedSolvers(configured: ChallengeSolver[], dns01: Dns01Solver | undefined): SolversFor {
  return (names) => (dns01 ? [dns01] : names.some((n) => n.startsWith('*.')) ? null : configured);
}

/** Step 8: the managed certificates into memory now; returns what orders the missing ones in the background (see the header). */
async function startManaged(managed: ManagedCertificates, manager: CertificateManager, { order, logger }: { order: boolean; logger: Logger }, stack: AsyncDisposableStack): Promise<() => void> {
  let closed = false;
  const timers = new Set<NodeJS.Timeout>();
  stack.defer(() => {
    closed = true;
    for (const t of timers) clearTimeout(t);
  });
  const ensure = async (key: string): Promise<void> => {
    const outcome = await manager.obtainManaged(key);
    if (closed || outcome.kind === 'ready') return;
    // The name's shared backoff says when an order may be placed again; given up: restart needed.
    const retryAt = await manager.retryAt(key).catch(() => undefined);
    if (typeof retryAt !== 'number') return;
    logger.warn({ domain: key, step: 'managed', retryAt: new Date(retryAt).toISOString(), reason: outcome.reason }, 'managed certificate not obtained; will retry');
    const timer = setTimeout(() => {
      timers.delete(timer);
      void ensure(key);
    }, Math.max(0, retryAt - Date.now()));
    timer.unref();
    timers.add(timer);
  };
  const missing: string[] = [];
  for (const key of managed.keys) {
    const names = managed.namesOf(key);
    const stored = await manager.loadStored(key, names).catch((err: unknown) => logger.error({ domain: key, step: 'managed', err }, 'could not load managed certificate'));
    if (stored) logger.info({ domain: key, step: 'managed', names }, 'managed certificate loaded from storage');
    else if (order) missing.push(key);
  }
  return () => {
    for (const key of missing.splice(0)) void ensure(key);
  };
}

/**
 * The dns-01 solver when acme.dns is configured, writing through the provider acme.dns.provider
 * names (or the caller's, for tests); the same provider removes left-over records for the
 * maintainer. A provider without acme.dns is a caller's mistake: refused.
 */
function dns01Solver(config: Config, deps: IssuancePartDeps): Dns01Solver | undefined {
  const dns = config.acme.dns;
  if (dns === undefined) {
    if (deps.dnsProvider) throw new Error('gateway start: a DNS provider was given but acme.dns is not configured (step dns-01)');
    return undefined;
  }
  const provider = deps.dnsProvider ?? createDnsProvider(dns);
  return new Dns01Solver({ provider, storage: deps.storage, logger: deps.logger, resolvers: dns.resolvers, propagationTimeoutMs: dns.propagationTimeout });
}

/**
 * Step 9: with acme.dns.delegation, a dns-01 solver writing at the delegation zone (the target of
 * the customer's CNAME) and the choice of solvers per order: a wildcard or registry-bound name
 * whose CNAME is in place uses it; any other name keeps the configured solvers.
 */
function delegatedSolvers(config: Config, deps: IssuancePartDeps, dns01: Dns01Solver | undefined) {
  const zone = config.acme.dns?.delegation?.zone;
  if (zone === undefined || dns01 === undefined) return undefined;
  const dns = config.acme.dns!;
  const delegation = new DcvDelegation(zone, dns.resolvers);
  const solver = new Dns01Solver({
    provider: dns01.provider,
    storage: deps.storage,
    logger: deps.logger,
    resolvers: dns.resolvers,
    propagationTimeoutMs: dns.propagationTimeout,
    recordName: (identifier) => delegation.record(identifier).target,
  });
  const solversFor = async (domain: string): Promise<ChallengeSolver[] | undefined> => {
    const bound = domain.startsWith('*.') || (await deps.policy.registry.get(domain))?.enabled === true;
    return bound && (await delegation.ready(domain)) ? [solver] : undefined;
  };
  return { delegation, solversFor };
}

/**
 * The admin API's view of step 9. Whether a name's A/AAAA point here: `onDemand.dns` (its
 * targets) when configured, else the pre-flight; with neither it cannot be told, and the answer
 * is no (no order that may fail).
 */
function dcvSupport(delegation: DcvDelegation, policy: PolicyPart, preflight: Preflight | undefined): AdminDcv {
  return {
    record: (name) => delegation.record(name),
    ready: (name) => delegation.ready(name),
    async pointsHere(name) {
      if (policy.dns) {
        const verdict = await policy.dns.check(name);
        return verdict.ok ? { ok: true } : { ok: false, reason: `onDemand.dns: ${verdict.reason}` };
      }
      if (preflight) {
        const result = await preflight.check(name);
        return result.ok ? { ok: true } : { ok: false, reason: `pre-flight: ${result.reason}` };
      }
      return { ok: false, reason: 'neither onDemand.dns nor onDemand.preflight is configured, so whether its A/AAAA point here cannot be checked' };
    },
  };
}

/** Each `acme.issuers[]` entry with its roots read (top-level acme.trustedRoots are already merged in by the schema). */
async function readIssuerRoots(issuers: IssuerConfig[]): Promise<IssuerSpec[]> {
  const readRoots = (files: string[]) =>
    Promise.all(
      files.map((file) =>
        readFile(file, 'utf8').catch((err: Error) => {
          throw new Error(`acme.trustedRoots: cannot read ${file}: ${err.message}`, { cause: err });
        }),
      ),
    );
  return Promise.all(issuers.map(async (spec) => ({ ...spec, trustedRoots: await readRoots(spec.trustedRoots) })));
}

/** Configured budgets apply to every issuer; by default Let's Encrypt's limits guard its directories only. */
function rateBudgets(config: Config, issuers: IssuerList, storage: Storage, logger: Logger): RateBudgets {
  if (config.acme.budgets) return new RateBudgets(config.acme.budgets, config.onDemand.limits, { storage, logger });
  const letsEncrypt = new Set(issuers.filter((i) => isLetsEncrypt(i.production.directory)).map((i) => i.production.ca));
  return new RateBudgets(LETS_ENCRYPT_BUDGETS, config.onDemand.limits, { storage, logger, cas: letsEncrypt });
}

function createMaintainer(config: Config, manager: CertificateManager, issuers: IssuerList, policy: PolicyPart, { storage, logger }: IssuancePartDeps, managed: ManagedCertificates, dnsProvider: DnsProvider | undefined): Maintainer {
  return new Maintainer(config.renewal, {
    storage,
    ...(dnsProvider ? { dnsProvider } : {}),
    manager,
    policy: policy.policy,
    // Managed certificates are listed in the config: renewed without asking the policy.
    isManaged: (domain) => managed.isManaged(domain),
    // ARI windows are asked of the issuer that issued each certificate.
    issuers: issuers.map((i) => i.production),
    ...(config.acme.profile ? { profile: config.acme.profile } : {}),
    logger,
    // Bindings still waiting for their ownership TXT record: a bounded batch per pass.
    ...(policy.ownership ? { tasks: [{ step: 'ownership-recheck', run: () => policy.ownership!.recheckPending(policy.registry) }] } : {}),
  });
}

/** A binding changed (here or on another instance): decide afresh at the next handshake. */
function forgetOnBindingChange({ registry, policy }: PolicyPart, manager: CertificateManager, cache: CertificateCache): void {
  registry.onChange((change) => {
    policy.forget(change.name);
    manager.forgetDecision(change.name);
    // Disabled: stop serving it at once (the handshake path then refuses to cache it again).
    if (change.type === 'domain-bound' && !change.binding.enabled) cache.delete(change.name);
  });
}
