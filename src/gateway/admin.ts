// The admin part: metrics and the admin API.
//   1. where the admin API listens (`listen.admin`, default 127.0.0.1:2019; `false`: nowhere)
//   2. the metrics: kept only by the process serving GET /metrics, or by a cluster worker
//      whose metrics that process adds up
//   3. wiring: certificate events, cache and budgets into the metrics
//   4. before the traffic listeners bind: load the admin API's modules and prom-client
//   5. after: relay this process's certificate events to the admin API, and start it
// The admin API's modules (zod, the OpenAPI document) and prom-client, ~250 ms of CPU, load
// before the traffic listeners bind, not after: with workers, the others serve while this one
// loads, instead of it holding connections it cannot answer yet.
import { GatewayMetrics, wireMetrics, type MetricsSnapshot, type PeerSnapshots } from '../admin/metrics.ts';
import { HostnameChecks } from '../admin/hostname-checks.ts';
import { relayEvents } from '../admin/relay.ts';
import { createResolver } from '../net/resolver.ts';
import type { AdminServer, MetricsSource } from '../admin/server.ts';
import type { Config, ListenAddress } from '../config/schema.ts';
import type { Logger } from '../util/log.ts';
import { renewalTime } from '../maintain/timing.ts';
import type { ClusterBus } from '../storage/bus.ts';
import type { Storage } from '../storage/storage.ts';
import type { IssuancePart } from './issuance.ts';
import type { ListenersPart } from './listeners.ts';
import type { PolicyPart } from './policy.ts';

/** Where the admin API listens when `listen.admin` is left unset; a busy port is then not fatal. */
export const DEFAULT_ADMIN_LISTEN = { host: '127.0.0.1', port: 2019 } as const;

/** A worker that does not serve GET /metrics loads prom-client this long after it listens. */
const PEER_METRICS_LOAD_DELAY_MS = 1000;

/** In a cluster worker: how its metrics reach the worker serving GET /metrics, which adds them up. */
export interface ClusterMetrics {
  /** The other workers' snapshots (for the worker serving GET /metrics). */
  peers(): Promise<PeerSnapshots>;
  /** Answers the other workers' requests with this worker's snapshot. */
  answer(snapshot: () => Promise<MetricsSnapshot>): void;
}

/** Whether and where this process serves the admin API, and its metrics. */
export interface AdminPlan {
  /** Undefined: this process runs no admin API (`listen.admin: false`, or not worker 0). */
  readonly address: ListenAddress | undefined;
  readonly metrics: GatewayMetrics;
  readonly clusterMetrics: ClusterMetrics | undefined;
}

/** Steps 1-2: `serveAdmin` false (a worker other than worker 0) runs no admin API here. */
export function planAdmin(config: Config, serveAdmin: boolean, clusterMetrics: ClusterMetrics | undefined): AdminPlan {
  const address = !serveAdmin || config.listen.admin === false ? undefined : (config.listen.admin ?? DEFAULT_ADMIN_LISTEN);
  const served = address !== undefined;
  const metrics = new GatewayMetrics({
    enabled: served || clusterMetrics !== undefined,
    ...(served && clusterMetrics ? { peers: () => clusterMetrics.peers() } : {}),
  });
  return { address, metrics, clusterMetrics };
}

/**
 * Steps 3-4: wires the metrics and, when this process serves the admin API, loads its modules
 * and prom-client. Returns the admin module to start once the listeners are up.
 */
export async function prepareAdmin(plan: AdminPlan, parts: { policy: PolicyPart; issuance: IssuancePart }, stack: AsyncDisposableStack) {
  const { metrics } = plan;
  const { manager, cache, budgets, issuers } = parts.issuance;
  stack.defer(wireMetrics(metrics, { events: manager.events, cache, budgets: () => parts.policy.limits.budgets() }));
  // The ACME new-orders budget per CA, read from storage when /metrics is scraped (only the
  // process serving the admin API ever is); a CA whose budget cannot be read is left out.
  metrics.addBudgetProvider(async () => {
    const budgeted = issuers.map((i) => i.production.ca).filter((ca) => budgets.appliesTo(ca));
    const read = await Promise.all(budgeted.map((ca) => budgets.remaining('newOrders', ca, '').then(({ remaining }) => [{ limit: `acme-new-orders:${ca}`, remaining }], () => [])));
    return read.flat();
  });
  if (!plan.address) return undefined;
  const [adminModule] = await Promise.all([import('../admin/server.ts'), metrics.start()]);
  return adminModule;
}

/** What starting the admin API needs. */
export interface AdminDeps {
  storage: Storage;
  bus: ClusterBus;
  logger: Logger;
  policy: PolicyPart;
  issuance: IssuancePart;
  listeners: ListenersPart;
  /** Served at GET /metrics instead of the gateway's own (tests). */
  metrics?: MetricsSource;
}

/**
 * Step 5: relays events, answers peers' metrics requests, and starts the admin API when this
 * process serves it. Undefined when it does not, or when the default port is taken (another
 * instance on this machine has it: a warning, not an error); any other failure throws.
 */
export async function openAdmin(config: Config, plan: AdminPlan, adminModule: typeof import('../admin/server.ts') | undefined, deps: AdminDeps, stack: AsyncDisposableStack): Promise<AdminServer | undefined> {
  const { logger, issuance } = deps;
  answerPeers(plan, logger);
  // Every process relays its certificate events to the instance's admin API (worker 0).
  stack.defer(relayEvents(issuance.manager.events, deps.bus, logger));
  if (!adminModule || !plan.address) return undefined;
  const address = plan.address;
  try {
    const admin = await adminModule.startAdminServer(address, { ...config.admin, ...adminToken(config) }, {
      storage: deps.storage,
      registry: deps.policy.registry,
      manager: issuance.manager,
      cache: issuance.cache,
      events: issuance.manager.events,
      bus: deps.bus,
      logger,
      metrics: deps.metrics ?? plan.metrics,
      // The scheduler's own timing (fraction, half-life, per-name jitter); an ARI window may move it.
      nextRenewal: (meta) => new Date(renewalTime(meta.domain, Date.parse(meta.notBefore), Date.parse(meta.notAfter), { fraction: config.renewal.fraction, jitterMs: config.renewal.jitter })),
      listenersUp: deps.listeners.listening,
      upstreamAllow: deps.listeners.upstreamAllow,
      ...(issuance.dcv ? { dcv: issuance.dcv } : {}),
      hostnames: hostnameChecks(config, deps),
    });
    stack.defer(() => admin.close());
    return admin;
  } catch (err) {
    // The default port taken (another instance on this machine has it) is not fatal.
    if ((err as { code?: string }).code === 'EADDRINUSE' && config.listen.admin === undefined) {
      logger.warn({ step: 'listen', admin: `${address.host}:${address.port}`, err: (err as Error).message }, 'admin API port in use; running without the admin API (set listen.admin)');
      return undefined;
    }
    throw new Error(`admin API: ${(err as Error).message}`, { cause: err });
  }
}

/** In a cluster worker: answer the metrics worker, and load prom-client off the start-up path. */
function answerPeers({ clusterMetrics, metrics, address }: AdminPlan, logger: Logger): void {
  if (!clusterMetrics) return;
  clusterMetrics.answer(() => metrics.snapshot());
  // Off the start-up path, but before the observations kept meanwhile pile up.
  if (!address) setTimeout(() => void metrics.start().catch((err: unknown) => logger.warn({ step: 'metrics', err }, 'could not load prom-client')), PEER_METRICS_LOAD_DELAY_MS).unref();
}

/**
 * The checks behind a hostname's `verification`. CAA is asked of the resolvers the other checks
 * use (ownership's, onDemand.dns's, the pre-flight's, else the system's).
 */
function hostnameChecks(config: Config, { policy, issuance, logger }: AdminDeps): HostnameChecks {
  const { ownership, dns, preflight } = config.onDemand;
  const servers = [ownership?.resolvers, dns?.resolvers, preflight ? preflight.resolvers : undefined].find((list) => list !== undefined && list.length > 0) ?? [];
  const cas = issuance.issuers.map((i) => ({ ca: i.production.ca, directory: i.production.directory }));
  return new HostnameChecks({
    registry: policy.registry,
    logger,
    dns: policy.dns,
    ownership: policy.ownership,
    caa: { resolver: createResolver(servers, { timeoutMs: 2000 }), cas },
    // A check after the customer fixed DNS counts for the very next handshake.
    forgetDecision: (name) => {
      policy.policy.forget(name);
      issuance.manager.forgetDecision(name);
    },
  });
}

/** CERTGATE_ADMIN_TOKEN, when set, wins over admin.token. */
function adminToken(config: Config): { token?: string } {
  const token = process.env.CERTGATE_ADMIN_TOKEN || config.admin.token;
  return token ? { token } : {};
}
