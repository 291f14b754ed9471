// Wires one gateway: storage, policy, ACME issuer, handshake path, proxy and the listeners.
import { readFile } from 'node:fs/promises';
import type { Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { AcmeIssuer } from './acme/issuer.ts';
import { createIssuers } from './acme/issuers.ts';
import { relayEvents } from './admin/relay.ts';
import type { AdminServer, MetricsSource } from './admin/server.ts';
import { Http01Solver, TlsAlpn01Solver } from './acme/solvers.ts';
import type { ChallengeSolver } from './acme/authorize.ts';
import { GatewayMetrics, wireMetrics, type MetricsSnapshot, type PeerSnapshots } from './admin/metrics.ts';
import type { LoadedConfig } from './config/load.ts';
import type { CertificateEvents } from './events.ts';
import { createLogger, type Logger } from './log.ts';
import { DnsOwnershipCheck } from './policy/dns.ts';
import { IssuanceLimits } from './issuance/limits.ts';
import { Maintainer } from './maintain/maintainer.ts';
import { renewalTime } from './maintain/timing.ts';
import { isLetsEncrypt, LETS_ENCRYPT_BUDGETS, RateBudgets, type BudgetsConfig } from './issuance/budgets.ts';
import { OnDemandPolicy } from './policy/policy.ts';
import { Preflight, PreflightResponder } from './issuance/preflight.ts';
import { DomainRegistry } from './policy/registry.ts';
import { ReverseProxy } from './proxy/proxy.ts';
import { UpstreamAllowList } from './proxy/upstream-allow.ts';
import { LocalBus, type ClusterBus } from './storage/bus.ts';
import { openStorage } from './storage/open.ts';
import type { Storage } from './storage/storage.ts';
import { CertificateCache } from './tls/cache.ts';
import { CacheSync } from './tls/cache-sync.ts';
import { CertificateManager } from './issuance/manager.ts';
import { loadFallbackCertificate } from './tls/fallback.ts';
import { ACME_TLS_ALPN, createHandshakeCallbacks, type HandshakeOutcome } from './tls/handshake.ts';
import { tlsServerOptions } from './tls/settings.ts';
import { loadTicketSecret, rotateTicketKeys } from './tls/tickets.ts';
import { createServer as createHttpServer } from './util/node-http.ts';

export interface GatewayOptions {
  logger?: Logger;
  /** Use this storage instead of the configured one (tests wrap storage to count reads). */
  storage?: Storage;
  /** Cache-coherence bus; default: the storage's own (Redis pub/sub) or an in-process one. */
  bus?: ClusterBus;
  /** Bind with SO_REUSEPORT so several worker processes share the ports. */
  reusePort?: boolean;
  onHandshake?: (outcome: HandshakeOutcome, domain: string | undefined) => void;
  /** Start the admin API (default true; with workers only worker 0 runs it). */
  admin?: boolean;
  /** Served at the admin API's GET /metrics. */
  metrics?: MetricsSource;
  /** In a cluster worker: how its metrics reach the worker serving GET /metrics, which adds them up. */
  clusterMetrics?: ClusterMetrics;
}

export interface ClusterMetrics {
  /** The other workers' snapshots (for the worker serving GET /metrics). */
  peers(): Promise<PeerSnapshots>;
  /** Answers the other workers' requests with this worker's snapshot. */
  answer(snapshot: () => Promise<MetricsSnapshot>): void;
}

/** A worker that does not serve GET /metrics loads prom-client this long after it listens. */
const PEER_METRICS_LOAD_DELAY_MS = 1000;

export const DEFAULT_ADMIN_LISTEN = { host: '127.0.0.1', port: 2019 } as const;

export interface Gateway {
  readonly httpsPort: number;
  readonly httpPort: number;
  readonly storage: Storage;
  readonly cache: CertificateCache;
  readonly manager: CertificateManager;
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
  close(): Promise<void>;
}

export async function startGateway(config: LoadedConfig, options: GatewayOptions = {}): Promise<Gateway> {
  const logger = options.logger ?? createLogger({ level: config.log.level });
  const opened = options.storage ? { storage: options.storage } : await openStorage(config.storage, logger);
  const storage = opened.storage;
  const bus = options.bus ?? opened.bus ?? new LocalBus();
  // Each issuer's roots (top-level acme.trustedRoots are already merged in by the schema).
  const readRoots = (files: string[]) =>
    Promise.all(
      files.map((file) =>
        readFile(file, 'utf8').catch((err: Error) => {
          throw new Error(`acme.trustedRoots: cannot read ${file}: ${err.message}`);
        }),
      ),
    );
  const issuerSpecs = await Promise.all(config.acme.issuers.map(async (spec) => ({ ...spec, trustedRoots: await readRoots(spec.trustedRoots) })));

  const http01 = config.acme.challenges.includes('http-01') ? new Http01Solver(storage, logger) : null;
  const tlsAlpn = config.acme.challenges.includes('tls-alpn-01') ? new TlsAlpn01Solver(storage, logger) : null;
  const solvers = config.acme.challenges.map((type): ChallengeSolver => (type === 'http-01' ? http01! : tlsAlpn!));

  const issuers = createIssuers(issuerSpecs, {
    ...(config.acme.email ? { email: config.acme.email } : {}),
    keyType: config.acme.keyType,
    solvers,
    timeoutMs: config.acme.timeout,
    storage,
    logger,
    ...(config.acme.profile ? { profile: config.acme.profile } : {}),
  });
  const issuer = issuers[0]!.production;
  // Configured budgets apply to every issuer; by default Let's Encrypt's limits guard its directories only.
  const budgetShare = config.onDemand.limits.budgetShare;
  const budgets = config.acme.budgets
    ? new RateBudgets(storage, budgetsFromConfig(config.acme.budgets), logger, Date.now, undefined, budgetShare)
    : new RateBudgets(storage, LETS_ENCRYPT_BUDGETS, logger, Date.now, new Set(issuers.filter((i) => isLetsEncrypt(i.production.directory)).map((i) => i.production.ca)), budgetShare);
  const preflightResponder = new PreflightResponder(storage, logger);
  const preflight =
    config.onDemand.preflight === false
      ? undefined
      : new Preflight(
          {
            resolvers: config.onDemand.preflight.resolvers,
            httpPort: config.onDemand.preflight.httpPort,
            timeoutMs: config.onDemand.preflight.timeout,
            storage,
            logger,
          },
          preflightResponder,
        );
  const dnsConfig = config.onDemand.dns;
  const dns = dnsConfig
    ? new DnsOwnershipCheck({
        targets: dnsConfig.targets,
        resolvers: dnsConfig.resolvers,
        match: dnsConfig.match,
        positiveTtlMs: dnsConfig.cacheTtl,
        negativeTtlMs: dnsConfig.negativeCacheTtl,
        staleMs: dnsConfig.staleFor,
        timeoutMs: dnsConfig.timeout,
        maxCacheEntries: config.onDemand.limits.unknownNameCache,
        logger,
      })
    : undefined;
  const registry = new DomainRegistry({ storage, logger });
  await registry.attachBus(bus);
  const policy = new OnDemandPolicy({
    allow: config.onDemand.allow,
    ...(config.onDemand.registry ? { registry } : {}),
    ...(config.onDemand.ask ? { ask: config.onDemand.ask } : {}),
    askTimeoutMs: config.onDemand.askTimeout,
    allowTtlMs: config.onDemand.askCacheTtl,
    denyTtlMs: config.onDemand.askDenyCacheTtl,
    maxCacheEntries: config.onDemand.limits.unknownNameCache,
    ...(dns ? { dns } : {}),
    logger,
  });
  const cache = new CertificateCache(config.tls.cacheSize, config.tls.contextCacheSize);
  // The process that serves the admin API (one per instance) is scraped and, with workers, adds
  // the others' metrics to its own; a single process without it keeps none.
  const adminAddress = options.admin === false || config.listen.admin === false ? undefined : (config.listen.admin ?? DEFAULT_ADMIN_LISTEN);
  const metricsServed = adminAddress !== undefined;
  const clusterMetrics = options.clusterMetrics;
  const metrics = new GatewayMetrics({
    enabled: metricsServed || clusterMetrics !== undefined,
    ...(metricsServed && clusterMetrics ? { peers: () => clusterMetrics.peers() } : {}),
  });
  const limits = new IssuanceLimits({
    perClient: config.onDemand.limits.perClient,
    global: config.onDemand.limits.global,
    maxClients: config.onDemand.limits.unknownNameCache,
    logger,
    onLimited: metrics.rateLimited,
  });
  let maintainer: Maintainer | undefined;
  const manager = new CertificateManager({
    storage,
    issuer,
    issuers,
    budgets,
    ...(preflight ? { preflight } : {}),
    retry: { delaysMs: config.acme.retry.delays, thenEveryMs: config.acme.retry.then, giveUpAfterMs: config.acme.retry.giveUpAfter },
    policy,
    cache,
    logger,
    maxConcurrentIssuances: config.onDemand.maxConcurrentIssuances,
    maxQueuedIssuances: config.onDemand.limits.maxQueuedIssuances,
    deniedTtlMs: config.onDemand.askDenyCacheTtl,
    issueLockTtlMs: config.acme.lockTtl,
    issueLockWaitMs: config.acme.timeout * 2,
    limits,
    maxNameEntries: config.onDemand.limits.unknownNameCache,
    // A handshake that loads a certificate inside its renewal time starts the renewal (not on edges).
    onStorageLoad: (bundle) => maintainer?.onCertificateLoaded(bundle),
  });
  if (config.role !== 'edge') {
    maintainer = new Maintainer({
      storage,
      manager,
      policy,
      // ARI windows are asked of the issuer that issued each certificate.
      issuers: issuers.map((i) => i.production),
      ...(config.acme.profile ? { profile: config.acme.profile } : {}),
      fraction: config.renewal.fraction,
      concurrency: config.renewal.concurrency,
      checkIntervalMs: config.renewal.checkInterval,
      jitterMs: config.renewal.jitter,
      leaderLockTtlMs: config.renewal.leaderLockTtl,
      expiredGraceMs: config.renewal.expiredGrace,
      staleChallengeAgeMs: config.renewal.staleChallengeAge,
      logger,
    });
  }
  const stopMetrics = wireMetrics(metrics, { events: manager.events, cache, budgets: () => limits.budgets() });
  // The ACME new-orders budget per CA, read from storage when /metrics is scraped (only the
  // process serving the admin API ever is); a CA whose budget cannot be read is left out.
  metrics.addBudgetProvider(async () => {
    const budgeted = issuers.map((i) => i.production.ca).filter((ca) => budgets.appliesTo(ca));
    const read = await Promise.all(
      budgeted.map((ca) =>
        budgets.remaining('newOrders', ca, '').then(
          ({ remaining }) => [{ limit: `acme-new-orders:${ca}`, remaining }],
          () => [],
        ),
      ),
    );
    return read.flat();
  });
  const cacheSync = new CacheSync({ cache, manager, logger });
  await cacheSync.attach(bus);
  // A binding changed (here or on another instance): decide afresh at the next handshake.
  registry.onChange((change) => {
    policy.forget(change.name);
    manager.forgetDecision(change.name);
    // Disabled: stop serving it at once (the handshake path then refuses to cache it again).
    if (change.type === 'domain-bound' && change.binding.status === 'disabled') cache.delete(change.name);
  });
  const fallback = await loadFallbackCertificate(storage, config.tls.fallback);
  const callbacks = createHandshakeCallbacks({
    cache,
    manager,
    tlsAlpn,
    fallback: fallback.context,
    handshakeWaitMs: config.onDemand.handshakeWait,
    logger,
    limits,
    isDisabled: async (domain) => (await registry.get(domain))?.status === 'disabled',
    onOutcome: options.onHandshake
      ? (outcome, domain) => {
          metrics.handshake(outcome);
          options.onHandshake!(outcome, domain);
        }
      : metrics.handshake,
  });

  // Registry upstreams are set through the admin API, possibly from customer input: where they
  // may point is checked (the admin API itself never).
  const upstreamAllow = new UpstreamAllowList({
    ...(config.proxy.upstreamAllow ? { allow: config.proxy.upstreamAllow } : {}),
    ...(adminAddress ? { admin: adminAddress } : {}),
  });
  const proxy = new ReverseProxy({
    ...(config.proxy.upstream ? { defaultUpstream: config.proxy.upstream } : {}),
    routes: config.proxy.routes,
    dynamicRoutes: registry,
    upstreamTimeoutMs: config.proxy.upstreamTimeout,
    accessLog: config.proxy.accessLog,
    ...(config.proxy.strictHost ? { strictHost: { fallbackCert: fallback.certPem } } : {}),
    upstreamAllow,
    logger,
    onResponse: metrics.proxied,
  });

  const https = createHttpsServer(
    {
      // Served when the client sends no SNI at all.
      cert: fallback.certPem,
      key: fallback.keyPem,
      ...tlsServerOptions(config.tls),
      SNICallback: callbacks.SNICallback,
      ALPNCallback: callbacks.ALPNCallback,
    },
    (req, res) => proxy.handleRequest(req, res),
  );
  https.on('upgrade', (req, socket, head) => proxy.handleUpgrade(req, socket, head));
  // A tls-alpn-01 validation ends after the handshake; no HTTP follows.
  https.on('secureConnection', (socket: TLSSocket) => {
    if (socket.alpnProtocol === ACME_TLS_ALPN) socket.end();
  });
  https.on('tlsClientError', (err, socket) => {
    logger.debug({ step: 'tls-handshake', sni: (socket as TLSSocket).servername || undefined, remote: socket.remoteAddress, err: err.message }, 'TLS handshake failed');
  });

  const httpsPublicPort = config.listen.https.port;
  const http = createHttpServer((req, res) => {
    if (http01?.handle(req, res)) return;
    // Every instance answers pre-flight probes, whichever one placed the token.
    if (preflightResponder.handle(req, res)) return;
    redirectToHttps(req.headers.host, req.url ?? '/', httpsPublicPort, res);
  });

  // Session tickets every worker and instance on this storage can decrypt.
  const stopTicketRotation = rotateTicketKeys([https], await loadTicketSecret(storage), config.tls.ticketKeyRotation, logger);

  // The admin API's modules (zod, the OpenAPI document) and prom-client, ~250 ms of CPU, are
  // loaded before the traffic listeners bind, not after: with workers, the others serve while
  // this one loads, instead of it holding connections it cannot answer yet.
  const adminModule = metricsServed ? import('./admin/server.ts') : undefined;
  if (metricsServed) await Promise.all([adminModule, metrics.start()]);

  const reusePort = options.reusePort ?? false;
  await listen(https, config.listen.https.host, config.listen.https.port, reusePort);
  try {
    await listen(http, config.listen.http.host, config.listen.http.port, reusePort);
  } catch (err) {
    https.close();
    throw err;
  }
  const httpsPort = (https.address() as AddressInfo).port;
  const httpPort = (http.address() as AddressInfo).port;
  if (clusterMetrics) {
    clusterMetrics.answer(() => metrics.snapshot());
    // Off the start-up path, but before the observations kept meanwhile pile up.
    if (!metricsServed) setTimeout(() => void metrics.start().catch((err: unknown) => logger.warn({ step: 'metrics', err }, 'could not load prom-client')), PEER_METRICS_LOAD_DELAY_MS).unref();
  }

  // Every process relays its certificate events to the instance's admin API (worker 0).
  const stopEventRelay = relayEvents(manager.events, bus, logger);
  let admin: AdminServer | undefined;
  if (adminModule && adminAddress) {
    try {
      const { startAdminServer } = await adminModule;
      admin = await startAdminServer({
        host: adminAddress.host,
        port: adminAddress.port,
        ...(adminToken(config) ? { token: adminToken(config)! } : {}),
        maxEventClients: config.admin.maxEventClients,
        storage,
        registry,
        manager,
        cache,
        events: manager.events,
        bus,
        logger,
        metrics: options.metrics ?? metrics,
        // The scheduler's own timing (fraction, half-life, per-name jitter); an ARI window may move it.
        nextRenewal: (meta) =>
          new Date(renewalTime(meta.domain, Date.parse(meta.notBefore), Date.parse(meta.notAfter), { fraction: config.renewal.fraction, jitterMs: config.renewal.jitter })),
        listenersUp: () => https.listening && http.listening,
        upstreamAllow,
      });
    } catch (err) {
      const inUse = (err as { code?: string }).code === 'EADDRINUSE';
      // The default port taken (another instance on this machine has it) is not fatal.
      if (inUse && config.listen.admin === undefined) {
        logger.warn({ step: 'listen', admin: `${adminAddress.host}:${adminAddress.port}`, err: (err as Error).message }, 'admin API port in use; running without the admin API (set listen.admin)');
      } else {
        stopEventRelay();
        stopTicketRotation();
        await Promise.all([closeServer(https), closeServer(http)]);
        throw new Error(`admin API: ${(err as Error).message}`, { cause: err });
      }
    }
  }
  logger.info(
    { step: 'listen', https: `${config.listen.https.host}:${httpsPort}`, http: `${config.listen.http.host}:${httpPort}`, storage: storage.description, cas: issuers.map((i) => i.production.ca), role: config.role },
    'gateway listening',
  );
  maintainer?.start();

  return {
    httpsPort,
    httpPort,
    storage,
    cache,
    manager,
    issuer,
    policy,
    budgets,
    proxy,
    events: manager.events,
    registry,
    adminPort: admin?.port,
    logger,
    metrics,
    limits,
    maintainer,
    async close() {
      await maintainer?.stop();
      stopTicketRotation();
      stopMetrics();
      stopEventRelay();
      await admin?.close();
      await Promise.all([closeServer(https), closeServer(http)]);
      await proxy.close();
      await cacheSync.close();
      await registry.close();
      if (!options.storage) await storage.close();
    },
  };
}

/** CERTGATE_ADMIN_TOKEN, when set, wins over admin.token. */
function adminToken(config: LoadedConfig): string | undefined {
  return process.env.CERTGATE_ADMIN_TOKEN || config.admin.token;
}

function budgetsFromConfig(b: NonNullable<LoadedConfig['acme']['budgets']>): BudgetsConfig {
  const limit = (x: { limit: number; window: number }) => ({ limit: x.limit, windowMs: x.window });
  return {
    newOrders: limit(b.newOrders),
    certificatesPerDomain: limit(b.certificatesPerDomain),
    duplicates: limit(b.duplicates),
    failedAuthorizations: limit(b.failedAuthorizations),
  };
}

function redirectToHttps(hostHeader: string | undefined, path: string, httpsPort: number, res: import('node:http').ServerResponse): void {
  const host = (hostHeader ?? '').replace(/:\d+$/, '');
  if (!host || /[^a-zA-Z0-9.\-[\]:]/.test(host)) {
    res.writeHead(400, { 'content-type': 'text/plain' }).end('400 Bad Request: missing or invalid Host header\n');
    return;
  }
  const port = httpsPort === 443 ? '' : `:${httpsPort}`;
  res.writeHead(308, { location: `https://${host}${port}${path.startsWith('/') ? path : '/'}`, 'content-type': 'text/plain' }).end('Redirecting to HTTPS\n');
}

function listen(server: HttpServer | HttpsServer, host: string, port: number, reusePort: boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(new Error(`cannot listen on ${host}:${port}: ${err.message}`, { cause: err }));
    server.once('error', onError);
    // In a cluster worker `exclusive` binds here rather than through the primary.
    server.listen({ host, port, ...(reusePort ? { reusePort: true, exclusive: true } : {}) }, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

function closeServer(server: HttpServer | HttpsServer): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
