// Prometheus metrics on prom-client, in a Registry of their own (never the global one, so
// several gateways in one process — tests, workers — do not mix). Counters are fed by observer
// hooks (handshake outcomes, proxied requests, rate-limit rejections) and by the certificate
// lifecycle events; gauges are computed at scrape time from provider functions, so nothing
// is kept up to date between scrapes.
//
// The admin server serves `render()` at GET /metrics with `contentType`.
//
// prom-client (~80 ms to load) is loaded by `start()` (the gateway calls it with the admin
// server's import; other cluster workers a little after they listen) or by the first `render()`;
// what is observed before that is replayed. A single process without the admin API is built with
// `enabled: false` and never loads it.
//
// With workers, the process serving GET /metrics adds up every worker's registry (`peers`, over
// the cluster's IPC channel): counters and histograms are summed, the cache gauges take the
// largest worker's value (each worker caches what it served, mostly the same names), budgets the
// smallest; `certgate_metrics_workers_reporting` and `_missing` say how many processes the answer
// covers and how many did not answer in time.
import type * as PromClient from 'prom-client';
import type { CertificateEvent, CertificateEvents } from '../issuance/events.ts';
import type { LimitScope } from '../issuance/limits.ts';
import type { ProxiedResponse } from '../proxy/proxy.ts';
import type { CertificateCache } from '../tls/cache.ts';
import type { HandshakeOutcome } from '../tls/handshake.ts';
import { commonJsExports } from '../util/commonjs.ts';

/** What the admin server needs to answer GET /metrics. */
export interface MetricsEndpoint {
  readonly contentType: string;
  render(): Promise<string>;
}

/** One process's registry, as prom-client's getMetricsAsJSON() gives it. */
export type MetricsSnapshot = PromClient.MetricObjectWithValues<PromClient.MetricValue<string>>[];

/** The other workers' snapshots, for the process that serves GET /metrics. */
export interface PeerSnapshots {
  snapshots: MetricsSnapshot[];
  /** Workers that were asked and did not answer in time (left out of the sums). */
  missing: number;
}

/** One rate-limit budget's remaining tokens, as the certgate_rate_limit_budget_remaining gauge shows it. */
export interface BudgetRemaining {
  /** Which budget, e.g. 'issuance-global' or 'acme-new-orders'. */
  limit: string;
  remaining: number;
}

/** Counts over this process's memory cache (storage is never scanned for metrics). */
export interface CertificateCounts {
  managed: number;
  expiringSoon: number;
}

const HANDSHAKE_OUTCOMES: HandshakeOutcome[] = ['cache-hit', 'storage', 'issued', 'fallback', 'challenge', 'refused', 'error'];
const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'];
const EXPIRING_WITHIN_MS = 7 * 24 * 3600_000;
/** The listeners whose connections are counted (certgate_open_connections, _dropped_total). */
const LISTENERS = ['https', 'http'];

/** What the gauges read at scrape time. */
interface ScrapeSources {
  certificateCounts(): CertificateCounts;
  cacheSize(): number;
  budgets(): Promise<BudgetRemaining[]>;
  openConnections(): Promise<Array<{ listener: string; open: number }>>;
}

/** The prom-client side: a Registry of its own with every certgate metric. */
class PrometheusMetrics {
  readonly prom: typeof PromClient;
  readonly registry: PromClient.Registry;
  readonly handshakes: PromClient.Counter<'outcome'>;
  readonly issuanceSeconds: PromClient.Histogram<'ca' | 'challenge'>;
  readonly orders: PromClient.Counter<'ca'>;
  readonly failures: PromClient.Counter<'ca' | 'step'>;
  readonly proxiedRequests: PromClient.Counter<'class'>;
  readonly upstreamSeconds: PromClient.Histogram;
  readonly rateLimitedHandshakes: PromClient.Counter<'scope'>;
  readonly droppedConnections: PromClient.Counter<'listener'>;

  constructor(prom: typeof PromClient, sources: ScrapeSources) {
    const { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } = prom;
    this.prom = prom;
    this.registry = new Registry();
    const registers = [this.registry];
    // The event-loop delay histogram samples with a timer: prom-client's 10 ms default woke an
    // idle gateway 100 times a second (~3-6 ms of CPU per second); 100 ms still catches every
    // stall of 100 ms or more and half of those of 50 ms.
    collectDefaultMetrics({ register: this.registry, prefix: 'certgate_', eventLoopMonitoringPrecision: 100 });
    this.handshakes = new Counter({
      name: 'certgate_handshakes_total',
      help: 'TLS handshakes by how the certificate was found: cache-hit, storage (loaded), issued, fallback, challenge (tls-alpn-01), refused (unrecognized_name alert), error',
      labelNames: ['outcome'],
      registers,
    });
    for (const outcome of HANDSHAKE_OUTCOMES) this.handshakes.inc({ outcome }, 0);
    this.issuanceSeconds = new Histogram({
      name: 'certgate_issuance_duration_seconds',
      help: 'Successful issuances and renewals, lock to stored certificate, by CA and challenge type',
      labelNames: ['ca', 'challenge'],
      buckets: [0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120],
      registers,
    });
    this.orders = new Counter({ name: 'certgate_acme_orders_total', help: 'Issuances started (one ACME order each), by CA', labelNames: ['ca'], registers });
    this.failures = new Counter({ name: 'certgate_acme_failures_total', help: 'Failed issuances, by CA and the step that failed', labelNames: ['ca', 'step'], registers });
    this.proxiedRequests = new Counter({
      name: 'certgate_proxied_requests_total',
      help: "Proxied HTTP requests by response status class (including the gateway's own 502/503/504)",
      labelNames: ['class'],
      registers,
    });
    for (const cls of STATUS_CLASSES) this.proxiedRequests.inc({ class: cls }, 0);
    this.upstreamSeconds = new Histogram({
      name: 'certgate_upstream_duration_seconds',
      help: 'Proxied requests that had an upstream: time from request to the end of the response',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    });
    this.rateLimitedHandshakes = new Counter({
      name: 'certgate_rate_limited_handshakes_total',
      help: 'Handshakes that would have started an issuance and were refused (fallback certificate or alert, tls.denied) because of onDemand.limits, by scope',
      labelNames: ['scope'],
      registers,
    });
    for (const scope of ['client', 'global']) this.rateLimitedHandshakes.inc({ scope }, 0);
    this.droppedConnections = new Counter({
      name: 'certgate_connections_dropped_total',
      help: 'Connections closed as soon as accepted because the listener had listen.maxConnections open, by listener',
      labelNames: ['listener'],
      registers,
    });
    for (const listener of LISTENERS) this.droppedConnections.inc({ listener }, 0);

    registerScrapeGauges(Gauge, sources, registers);
  }
}

/** Gauges computed at scrape time from `sources`; `this` inside collect() is the gauge. */
function registerScrapeGauges(Gauge: typeof PromClient.Gauge, sources: ScrapeSources, registers: PromClient.Registry[]): void {
  new Gauge({
    name: 'certgate_certificates_managed',
    help: "Valid certificates in this process's memory cache (it fills lazily; storage is not scanned); with workers, the largest worker's",
    registers,
    aggregator: 'max',
    collect() {
      this.set(sources.certificateCounts().managed);
    },
  });
  new Gauge({
    name: 'certgate_certificates_expiring_7d',
    help: "Certificates in this process's memory cache that expire within 7 days; with workers, the largest worker's",
    registers,
    aggregator: 'max',
    collect() {
      this.set(sources.certificateCounts().expiringSoon);
    },
  });
  new Gauge({
    name: 'certgate_certificate_cache_entries',
    help: 'Entries in the in-memory certificate cache (bounded by tls.cacheSize per process); with workers, the largest worker\'s',
    registers,
    aggregator: 'max',
    collect() {
      this.set(sources.cacheSize());
    },
  });
  new Gauge({
    name: 'certgate_rate_limit_budget_remaining',
    help: 'Tokens left in each rate-limit budget, by limit; with workers, the smallest worker\'s',
    labelNames: ['limit'],
    registers,
    aggregator: 'min',
    async collect() {
      const all = await sources.budgets();
      this.reset();
      for (const { limit, remaining } of all) this.set({ limit }, remaining);
    },
  });
  new Gauge({
    name: 'certgate_open_connections',
    help: 'Open client connections, by listener (each capped at listen.maxConnections per process); with workers, the sum',
    labelNames: ['listener'],
    registers,
    async collect() {
      const all = await sources.openConnections();
      this.reset();
      for (const { listener, open } of all) this.set({ listener }, open);
    },
  });
}

/** Observations kept until prom-client is loaded (it takes ~100 ms after the listeners are up). */
const MAX_PENDING_OBSERVATIONS = 100_000;
const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/**
 * The gateway's Prometheus metrics. Observations made before `start()` loads prom-client are
 * kept (bounded) and replayed; with `enabled: false` (a process never scraped) nothing is kept.
 */
export class GatewayMetrics implements MetricsEndpoint {
  private prometheus: PrometheusMetrics | undefined;
  private loading: Promise<PrometheusMetrics> | undefined;
  /** Observations made before prom-client was loaded; null when this process is never scraped. */
  private pending: Array<(p: PrometheusMetrics) => void> | null;
  private readonly budgetProviders: Array<() => BudgetRemaining[] | Promise<BudgetRemaining[]>> = [];
  private certificateCounts: () => CertificateCounts = () => ({ managed: 0, expiringSoon: 0 });
  private cacheSize: () => number = () => 0;
  private readonly connectionCounters = new Map<string, () => Promise<number>>();

  private readonly peers: (() => Promise<PeerSnapshots>) | undefined;

  /**
   * `enabled: false`: this process is never scraped and keeps nothing. `peers`: the other
   * workers' snapshots, added to this process's own in render().
   */
  constructor({ enabled = true, peers }: { enabled?: boolean; peers?: () => Promise<PeerSnapshots> } = {}) {
    this.pending = enabled ? [] : null;
    this.peers = peers;
  }

  /** Loads prom-client (once) and applies what was observed meanwhile. */
  async start(): Promise<void> {
    await this.load();
  }

  get contentType(): string {
    return this.prometheus?.registry.contentType ?? PROMETHEUS_CONTENT_TYPE;
  }

  async render(): Promise<string> {
    const prometheus = await this.load();
    if (!this.peers) return prometheus.registry.metrics();
    const [own, others] = await Promise.all([prometheus.registry.getMetricsAsJSON(), this.peers()]);
    const total = prometheus.prom.AggregatorRegistry.aggregate([own, ...others.snapshots]);
    new prometheus.prom.Gauge({
      name: 'certgate_metrics_workers_reporting',
      help: 'Processes whose metrics this answer adds up (this one and the workers that answered in time)',
      registers: [total],
    }).set(1 + others.snapshots.length);
    new prometheus.prom.Gauge({
      name: 'certgate_metrics_workers_missing',
      help: 'Workers that did not answer in time: their counts are missing from this answer',
      registers: [total],
    }).set(others.missing);
    return total.metrics();
  }

  /** This process's metrics, for the process that serves GET /metrics to add up. */
  async snapshot(): Promise<MetricsSnapshot> {
    return (await this.load()).registry.getMetricsAsJSON();
  }

  /** For HandshakeOptions.onOutcome. */
  readonly handshake = (outcome: HandshakeOutcome): void => {
    if (this.prometheus) this.prometheus.handshakes.inc({ outcome });
    else if (this.pending) this.later((p) => p.handshakes.inc({ outcome }));
  };

  /** For ProxyOptions.onResponse. */
  readonly proxied = (response: ProxiedResponse): void => {
    if (!this.prometheus && !this.pending) return; // not kept in this process
    const cls = `${Math.min(5, Math.max(1, Math.floor(response.status / 100)))}xx`;
    const observe = (p: PrometheusMetrics): void => {
      p.proxiedRequests.inc({ class: cls });
      if (response.upstream !== null) p.upstreamSeconds.observe(response.ms / 1000);
    };
    if (this.prometheus) observe(this.prometheus);
    else this.later(observe);
  };

  /** For IssuanceLimitsOptions.onLimited. */
  readonly rateLimited = (scope: LimitScope): void => {
    this.later((p) => p.rateLimitedHandshakes.inc({ scope }));
  };

  /** For a listener's 'drop' event (listen.maxConnections reached). */
  readonly connectionDropped = (listener: string): void => {
    this.later((p) => p.droppedConnections.inc({ listener }));
  };

  /** Reads a listener's open connections at scrape time (e.g. from net.Server.getConnections). */
  countConnections(listener: string, count: () => Promise<number>): void {
    this.connectionCounters.set(listener, count);
  }

  /** Adds a source of rate-limit budgets (the issuance limits, the ACME order budget, ...), read at scrape time. */
  addBudgetProvider(provider: () => BudgetRemaining[] | Promise<BudgetRemaining[]>): void {
    this.budgetProviders.push(provider);
  }

  /** Counts certificates from the memory cache at scrape time (cheap: no storage access). */
  useCache(cache: CertificateCache): void {
    this.cacheSize = () => cache.size;
    this.certificateCounts = () => countCached(cache, Date.now());
  }

  /** Replaces the certificate counts, e.g. with counts kept by a domain registry. */
  useCertificateCounts(provider: () => CertificateCounts): void {
    this.certificateCounts = provider;
  }

  /** Follows issuance events; returns the unsubscribe function. */
  observeEvents(events: CertificateEvents): () => void {
    return events.on((event: CertificateEvent) => {
      switch (event.type) {
        case 'issuance-started':
          this.later((p) => p.orders.inc({ ca: event.ca }));
          break;
        case 'issuance-succeeded':
        case 'renewed':
          this.later((p) => p.issuanceSeconds.observe({ ca: event.ca, challenge: event.challenge ?? 'unknown' }, event.ms / 1000));
          break;
        case 'issuance-failed':
          this.later((p) => p.failures.inc({ ca: event.ca, step: event.step }));
          break;
        default:
          break;
      }
    });
  }

  /** Applies an observation now when prom-client is loaded, else keeps it for then. */
  private later(observe: (p: PrometheusMetrics) => void): void {
    if (this.prometheus) observe(this.prometheus);
    else if (this.pending && this.pending.length < MAX_PENDING_OBSERVATIONS) this.pending.push(observe);
  }

  private load(): Promise<PrometheusMetrics> {
    if (this.pending === null) return Promise.reject(new Error('metrics: not kept in this process (the process running the admin API serves them)'));
    this.loading ??= import('prom-client').then(commonJsExports).then((prom) => {
      const prometheus = new PrometheusMetrics(prom, {
        certificateCounts: () => this.certificateCounts(),
        cacheSize: () => this.cacheSize(),
        budgets: async () => (await Promise.all(this.budgetProviders.map((provider) => provider()))).flat(),
        openConnections: () => Promise.all([...this.connectionCounters].map(async ([listener, count]) => ({ listener, open: await count() }))),
      });
      for (const observe of this.pending ?? []) observe(prometheus);
      this.pending = [];
      this.prometheus = prometheus;
      return prometheus;
    });
    return this.loading;
  }
}

function countCached(cache: CertificateCache, now: number): CertificateCounts {
  let managed = 0;
  let expiringSoon = 0;
  for (const domain of cache.domains()) {
    const entry = cache.peek(domain);
    if (!entry || entry.notAfter <= now) continue;
    managed++;
    if (entry.notAfter - now <= EXPIRING_WITHIN_MS) expiringSoon++;
  }
  return { managed, expiringSoon };
}

/** The parts wireMetrics observes: the certificate events, the memory cache and the abuse budgets. */
export interface MetricsWiring {
  events: CertificateEvents;
  cache: CertificateCache;
  /** Budgets of the issuance rate limits (IssuanceLimits.budgets). */
  budgets?: () => BudgetRemaining[];
}

/**
 * Feeds metrics from a gateway's parts; returns the function that stops following events.
 * The hooks (metrics.handshake, .proxied, .rateLimited) are passed where those parts are built.
 */
export function wireMetrics(metrics: GatewayMetrics, parts: MetricsWiring): () => void {
  metrics.useCache(parts.cache);
  if (parts.budgets) metrics.addBudgetProvider(parts.budgets);
  return metrics.observeEvents(parts.events);
}
