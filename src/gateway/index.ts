// One gateway, assembled from its parts in the order they open:
//   1. storage and the cluster bus (unless the caller passes its own: then it closes them)
//   2. the admin plan: does this process serve the admin API, and keep metrics?
//   3. the policy part (policy.ts): registry, DNS check, on-demand policy, abuse limits
//   4. the issuance part (issuance.ts): solvers, issuers, budgets, pre-flight, cache, manager,
//      and the webhooks (webhooks.ts), which hear its events and the registry's changes
//   5. metrics wiring and the admin API's modules, loaded before the listeners bind (admin.ts)
//   6. the listeners (listeners.ts): handshake path, proxy, HTTPS and HTTP, session tickets;
//      once they listen, the missing managed certificates are ordered (the CA validates there)
//   7. the admin API (admin.ts), then the maintainer
// Everything opened goes onto one AsyncDisposableStack as it opens: a failed start closes what
// was opened, and close() closes it all, in the reverse order by construction (the listeners
// drain first: requests in flight finish within `shutdownTimeout`). reload() applies a changed
// config's live keys to the parts (reload.ts).
import type { MetricsSource } from '../admin/server.ts';
import type { GatewayMetrics } from '../admin/metrics.ts';
import type { AcmeIssuer } from '../acme/issuer.ts';
import type { DnsProvider } from '../acme/dns/provider.ts';
import type { ConfigChanges } from '../config/changes.ts';
import type { LoadedConfig } from '../config/load.ts';
import type { Config } from '../config/schema.ts';
import type { CertificateEvents } from '../issuance/events.ts';
import { createLogger, type Logger } from '../util/log.ts';
import type { Maintainer } from '../maintain/maintainer.ts';
import type { RateBudgets } from '../issuance/budgets.ts';
import type { IssuanceLimits } from '../issuance/limits.ts';
import type { OnDemandPolicy } from '../policy/policy.ts';
import type { DomainRegistry } from '../policy/registry.ts';
import type { ReverseProxy } from '../proxy/proxy.ts';
import { LocalBus, type ClusterBus } from '../storage/bus.ts';
import { openStorage } from '../storage/open.ts';
import type { Storage } from '../storage/storage.ts';
import type { CertificateCache } from '../tls/cache.ts';
import type { CertificateManager } from '../issuance/manager.ts';
import type { HandshakeOutcome } from '../tls/handshake.ts';
import { openAdmin, planAdmin, prepareAdmin, type ClusterMetrics } from './admin.ts';
import { assembleIssuance } from './issuance.ts';
import { openListeners } from './listeners.ts';
import { assemblePolicy } from './policy.ts';
import { openWebhooks } from './webhooks.ts';
import type { WebhookDispatcher } from '../webhooks/dispatcher.ts';
import { createReloader } from './reload.ts';

export { DEFAULT_ADMIN_LISTEN, type ClusterMetrics } from './admin.ts';

/** How the caller (CLI, cluster worker, tests) adjusts one gateway beyond its config. */
export interface GatewayOptions {
  logger?: Logger;
  /** Use this storage instead of the configured one (tests wrap storage to count reads); the caller closes it. */
  storage?: Storage;
  /** Cache-coherence bus; default: the storage's own (Redis pub/sub) or an in-process one. */
  bus?: ClusterBus;
  /** Bind with SO_REUSEPORT so several worker processes share the ports. */
  reusePort?: boolean;
  /** Observes every SNI decision, after the metrics do. */
  onHandshake?: (outcome: HandshakeOutcome, domain: string | undefined) => void;
  /** Start the admin API (default true; with workers only worker 0 runs it). */
  admin?: boolean;
  /** Served at the admin API's GET /metrics. */
  metrics?: MetricsSource;
  /** In a cluster worker: how its metrics reach the worker serving GET /metrics, which adds them up. */
  clusterMetrics?: ClusterMetrics;
  /** Writes dns-01 TXT records (acme.dns must be configured); until the config builds one, tests pass it here. */
  dnsProvider?: DnsProvider;
}

/** A running gateway: its parts (for tests and the CLI) and close(), which stops all of it. */
export interface Gateway {
  readonly httpsPort: number;
  readonly httpPort: number;
  readonly storage: Storage;
  readonly cache: CertificateCache;
  readonly manager: CertificateManager;
  /** The preferred issuer's production CA. */
  readonly issuer: AcmeIssuer;
  readonly policy: OnDemandPolicy;
  /** Rate-limit budgets (remaining() per budget, for metrics). */
  readonly budgets: RateBudgets;
  readonly proxy: ReverseProxy;
  readonly events: CertificateEvents;
  readonly registry: DomainRegistry;
  /** The admin API's port, or undefined when it is not running in this process. */
  readonly adminPort: number | undefined;
  readonly logger: Logger;
  /** Prometheus metrics: `render()` and `contentType` for GET /metrics. */
  readonly metrics: GatewayMetrics;
  /** Abuse limits on handshakes that would start an issuance (onDemand.limits). */
  readonly limits: IssuanceLimits;
  /** Renewal and cleanup (leader-elected); absent with `role: edge`. */
  readonly maintainer: Maintainer | undefined;
  /** Webhook delivery (`webhooks`); `reconfigure(config.webhooks)` applies a reload. */
  readonly webhooks: WebhookDispatcher;
  /**
   * Applies a reloaded, validated config: the live keys that changed (src/config/changes.ts:
   * routes, upstream, allow, ask, limit rates, log level, shutdownTimeout, webhooks) take effect for the
   * next request or handshake. Returns what changed; `restart` keys were not applied. Throws
   * when a part refuses a value (the caller logs it; the running config stays for that part).
   */
  reload(config: Config): ConfigChanges;
  /**
   * Stops everything, in the reverse of the order it started; storage only if the gateway opened
   * it. The listeners stop accepting first and let requests in flight finish for up to
   * `shutdownTimeout` (then cut them); idle keep-alive connections close at once.
   */
  close(): Promise<void>;
}

/** Starts a gateway; on failure, whatever it had opened is closed before the error is thrown. */
export async function startGateway(config: LoadedConfig, options: GatewayOptions = {}): Promise<Gateway> {
  await using stack = new AsyncDisposableStack();
  const logger = options.logger ?? createLogger({ level: config.log.level });
  const { storage, bus } = await openStorageAndBus(config, options, logger, stack);
  const plan = planAdmin(config, options.admin !== false, options.clusterMetrics);
  const policy = await assemblePolicy(config, { storage, bus, logger, onLimited: plan.metrics.rateLimited }, stack);
  const issuance = await assembleIssuance(config, { storage, bus, logger, policy, dnsProvider: options.dnsProvider }, stack);
  const webhooks = openWebhooks(config, { storage, logger, policy, issuance }, stack);
  const adminModule = await prepareAdmin(plan, { policy, issuance }, stack);
  const listeners = await openListeners(
    config,
    { storage, logger, policy, issuance, metrics: plan.metrics, adminAddress: plan.address, reusePort: options.reusePort ?? false, ...(options.onHandshake ? { onHandshake: options.onHandshake } : {}) },
    stack,
  );
  issuance.orderManaged();
  const admin = await openAdmin(config, plan, adminModule, { storage, bus, logger, policy, issuance, listeners, ...(options.metrics ? { metrics: options.metrics } : {}) }, stack);
  const { https, http } = config.listen;
  logger.info(
    { step: 'listen', https: `${https.host}:${listeners.httpsPort}`, http: `${http.host}:${listeners.httpPort}`, storage: storage.description, cas: issuance.issuers.map((i) => i.production.ca), role: config.role },
    'gateway listening',
  );
  startMaintainer(issuance.maintainer, stack);
  const owned = stack.move();
  return {
    ...{ httpsPort: listeners.httpsPort, httpPort: listeners.httpPort, proxy: listeners.proxy, adminPort: admin?.port },
    ...{ storage, logger, metrics: plan.metrics, policy: policy.policy, registry: policy.registry, limits: policy.limits, webhooks },
    ...{ cache: issuance.cache, manager: issuance.manager, issuer: issuance.issuer, budgets: issuance.budgets, maintainer: issuance.maintainer, events: issuance.manager.events },
    reload: createReloader(config, { logger, listeners, policy, webhooks }),
    close: () => owned.disposeAsync(),
  };
}

/** Step 1: the caller's storage and bus, or the configured storage (closed with the gateway). */
async function openStorageAndBus(config: LoadedConfig, options: GatewayOptions, logger: Logger, stack: AsyncDisposableStack): Promise<{ storage: Storage; bus: ClusterBus }> {
  if (options.storage) return { storage: options.storage, bus: options.bus ?? new LocalBus() };
  const opened = await openStorage(config.storage, logger);
  stack.defer(() => opened.storage.close());
  return { storage: opened.storage, bus: options.bus ?? opened.bus ?? new LocalBus() };
}

function startMaintainer(maintainer: Maintainer | undefined, stack: AsyncDisposableStack): void {
  if (!maintainer) return;
  maintainer.start();
  stack.defer(() => maintainer.stop());
}
