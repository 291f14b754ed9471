// The admin API (node:http, JSON) on `listen.admin`: domain bindings, certificates, health,
// metrics and an event stream. See /openapi.json (src/admin/openapi.ts) and docs/config.md.
//
// Auth: `Authorization: Bearer <admin.token>`, compared in constant time. Without a token the
// API is open to whoever can reach it, so it refuses to start on a non-loopback address without
// one. /healthz, /readyz and /openapi.json are always open (load balancers, tooling), and so is
// the dashboard's page and assets at /ui/ (they hold no data; see ui-assets.ts).
import { createHash, timingSafeEqual, X509Certificate } from 'node:crypto';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer } from '../util/node-http.ts';
import { isIP, type AddressInfo } from 'node:net';
import type { z } from 'zod';
import type { AdminConfig, ListenAddress } from '../config/schema.ts';
import type { CertificateEvent, CertificateEvents } from '../issuance/events.ts';
import type { Logger } from '../util/log.ts';
import { DomainRegistry, InvalidDomainError, type DomainBinding, type RegistryChange } from '../policy/registry.ts';
import { bindingInputSchema } from './bindings.ts';
import { parseUpstream } from '../net/upstream.ts';
import type { UpstreamAllowList } from '../proxy/upstream-allow.ts';
import { failureHistory, type CertificateStatus, type FailureHistory } from './certificate-status.ts';
import type { CertificateMeta } from '../issuance/store.ts';
import { keys } from '../storage/keys.ts';
import { StorageError, type Storage } from '../storage/storage.ts';
import type { CertificateCache } from '../tls/cache.ts';
import type { CertificateManager } from '../issuance/manager.ts';
import type { ClusterBus } from '../storage/bus.ts';
import type { DcvRecord } from '../acme/dns/delegation.ts';
import { HostnameChecks } from './hostname-checks.ts';
import { describeHostname, HOSTNAME_STATUSES, type CheckResults, type Hostname, type HostnameStatus } from './hostname-status.ts';
import { openApiDocument } from './openapi.ts';
import { forEachConcurrently } from '../util/concurrency.ts';
import { onRelayedEvents } from './relay.ts';
import { EventStream } from './sse.ts';
import { webhookDeliveries } from './webhook-deliveries.ts';
import { Activity } from './activity.ts';
import { ExpiryStats } from './expiry-stats.ts';
import { serveUi, UiAssets } from './ui-assets.ts';

/** What GET /metrics serves (src/admin/metrics.ts provides the real one). */
export interface MetricsSource {
  readonly contentType: string;
  render(): Promise<string>;
}

/**
 * When a certificate is due for renewal. For now two thirds into its lifetime; the renewal
 * scheduler replaces this (pass `nextRenewal` to startAdminServer).
 */
export function defaultNextRenewal(meta: Pick<CertificateMeta, 'notBefore' | 'notAfter'>): Date {
  const from = Date.parse(meta.notBefore);
  const to = Date.parse(meta.notAfter);
  return new Date(from + ((to - from) * 2) / 3);
}

/** The certificate manager's members the admin API calls (a real CertificateManager has them). */
export type AdminManager = Pick<CertificateManager, 'obtain' | 'renew' | 'delete' | 'revoke' | 'storedCertificate' | 'failureRecord'> &
  Partial<Pick<CertificateManager, 'obtainDelegated' | 'certificateKey'>>;

/** DCV delegation as the admin API uses it (the gateway's is built from acme.dns.delegation). */
export interface AdminDcv {
  /** The CNAME `name` needs (a wildcard's: that of its base name). */
  record(name: string): DcvRecord;
  /** Whether that CNAME is answered with its target now. */
  ready(name: string): Promise<boolean>;
  /** Whether `name`'s A/AAAA point at the platform (else: why not, or why it cannot be told). */
  pointsHere(name: string): Promise<{ ok: true } | { ok: false; reason: string }>;
}

/**
 * What the admin API works with besides its config section. `events` feeds GET /v1/events when
 * there is no `bus`; with a `bus`, every process's events arrive through it (see relay.ts), so
 * the process's own events must be relayed onto it (relayEvents) or they are not streamed.
 */
export interface AdminServerDeps {
  storage: Storage;
  registry: DomainRegistry;
  manager: AdminManager;
  cache: CertificateCache;
  events: CertificateEvents;
  bus?: ClusterBus;
  logger: Logger;
  /** Served at GET /metrics; absent: 404. */
  metrics?: MetricsSource;
  /** Built from `proxy.upstreamAllow`: a binding whose upstream is an IP literal it refuses gets 400. */
  upstreamAllow: UpstreamAllowList;
  /** Readiness beyond storage (e.g. the gateway's listeners are up); default: always ready. */
  listenersUp?: () => boolean;
  /** When a certificate is due for renewal (the scheduler's timing); default: defaultNextRenewal. */
  nextRenewal?: (meta: CertificateMeta) => Date | null;
  /** Keep-alive comment interval of the event stream (tests shorten it). */
  keepAliveMs?: number;
  /** The dashboard's assets (/ui/); default: next to this module when built, else bundled from src/ui/. */
  ui?: UiAssets;
  /**
   * DCV delegation (acme.dns.delegation): GET /v1/domains/{name} shows the `dcv` record, issue
   * orders through it, wildcard bindings are accepted. Absent: none of that.
   */
  dcv?: AdminDcv;
  /**
   * The DNS/CAA/ownership checks behind a hostname's `verification` (run at bind and on
   * ?check=true); absent: none configured, the status still comes from storage.
   */
  hostnames?: HostnameChecks;
}

/** A running admin API; `close` ends its event streams and connections. */
export interface AdminServer {
  readonly port: number;
  readonly host: string;
  close(): Promise<void>;
}

const MAX_BODY_BYTES = 64 * 1024;
const MAX_PAGE = 1000;
/** A filtered list (?status=) reads at most this many bindings per call, then answers what it found. */
const MAX_FILTER_SCAN = 2000;
/** Storage reads in flight at once while a page's statuses are read. */
const STATUS_READS = 16;

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

/** Whether a host (literal or `localhost`) is a loopback address; names are not resolved. */
export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  if (isIP(host) === 6) return host === '::1' || host === '0:0:0:0:0:0:0:1';
  return false;
}

/** One running admin API's state, shared by the route handlers below. */
interface AdminContext {
  readonly deps: AdminServerDeps;
  readonly stream: EventStream;
  readonly tokenDigest: Buffer | undefined;
  readonly nextRenewal: (meta: CertificateMeta) => Date | null;
  readonly hostnames: HostnameChecks;
  /** The dashboard's: recent events, hourly counts, expiry per day, assets. */
  readonly activity: Activity;
  readonly expiry: ExpiryStats;
  readonly ui: UiAssets;
}

/**
 * Starts the admin API on `address` (port 0: any free one) with the `admin` config section as
 * parsed (`token`: pass CERTGATE_ADMIN_TOKEN in it when set). Refuses a non-loopback address
 * without a token; rejects when the port cannot be bound (the error keeps its `code`, e.g.
 * EADDRINUSE). Needs no gateway: storage, registry and manager are enough.
 */
export async function startAdminServer(address: ListenAddress, config: AdminConfig, deps: AdminServerDeps): Promise<AdminServer> {
  if (!config.token && !isLoopback(address.host)) {
    throw new Error(
      `listen.admin is ${address.host}:${address.port}, not a loopback address, and there is no admin token: set admin.token (or CERTGATE_ADMIN_TOKEN), or bind the admin API to 127.0.0.1`,
    );
  }
  const stream = new EventStream({ ...(deps.keepAliveMs ? { keepAliveMs: deps.keepAliveMs } : {}), maxClients: config.maxEventClients });
  const ctx: AdminContext = {
    deps,
    stream,
    tokenDigest: config.token ? sha256(config.token) : undefined,
    nextRenewal: deps.nextRenewal ?? defaultNextRenewal,
    hostnames: deps.hostnames ?? new HostnameChecks({ registry: deps.registry, logger: deps.logger }),
    activity: new Activity(),
    expiry: new ExpiryStats(deps.storage),
    ui: deps.ui ?? new UiAssets(),
  };
  const onEvent = (event: CertificateEvent) => {
    stream.send(event.type, event);
    ctx.activity.record(event.type, event);
  };
  // Every process's events through the bus when there is one (see relay.ts), else this one's.
  const stopEvents = deps.bus ? await onRelayedEvents(deps.bus, onEvent) : deps.events.on(onEvent);
  const stopRegistry = deps.registry.onChange((change: RegistryChange) => {
    const data = { ...change, at: new Date().toISOString() };
    stream.send(change.type, data);
    ctx.activity.record(change.type, data);
  });
  const server: Server = createServer((req, res) => serve(ctx, req, res));
  try {
    await listenOn(server, address);
  } catch (err) {
    await stopEvents();
    stopRegistry();
    stream.close();
    throw err;
  }
  const port = (server.address() as AddressInfo).port;
  deps.logger.info({ step: 'listen', admin: `${address.host}:${port}`, auth: ctx.tokenDigest ? 'bearer' : 'none (loopback)' }, 'admin API listening');
  return {
    port,
    host: address.host,
    async close() {
      await stopEvents();
      stopRegistry();
      stream.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

function listenOn(server: Server, { host, port }: ListenAddress): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** Handles one request and logs it; errors become JSON answers (HttpError: its status). */
function serve(ctx: AdminContext, req: IncomingMessage, res: ServerResponse): void {
  const { logger } = ctx.deps;
  const started = performance.now();
  handle(ctx, req, res).then(
    () => logger.debug({ step: 'admin', method: req.method, path: req.url, status: res.statusCode, ms: Math.round(performance.now() - started) }, 'admin call'),
    (err: unknown) => {
      if (err instanceof HttpError) {
        const records = err instanceof DcvMissing ? { records: err.records } : {};
        if (!res.headersSent) send(res, err.status, { error: err.message, ...(err.field ? { field: err.field } : {}), ...records });
        logger.info({ step: 'admin', method: req.method, path: req.url, status: err.status, err: err.message }, 'admin call refused');
        return;
      }
      if (err instanceof StorageError) {
        logger.warn({ step: 'admin', method: req.method, path: req.url, err: err.message }, 'admin call failed: storage unavailable');
        if (!res.headersSent) send(res, 503, { error: `storage unavailable: ${err.message}` });
        return;
      }
      logger.error({ step: 'admin', method: req.method, path: req.url, err }, 'admin call failed');
      if (!res.headersSent) send(res, 500, { error: `internal error: ${(err as Error).message}` });
      else res.destroy();
    },
  );
}

/**
 * The routes, in order:
 *   1. open endpoints: /healthz, /readyz, /openapi.json, the dashboard (/ui/)
 *   2. auth: the bearer token; without one, loopback Host and no Origin (DNS rebinding, CSRF)
 *   3. /metrics, /v1/events, /v1/events/recent, /v1/stats, GET /v1/domains (a page)
 *   4. /v1/domains/:name[/issue]
 *   5. /v1/certificates/:name[/renew]
 *   6. /v1/webhooks/deliveries (webhook-deliveries.ts)
 */
async function handle(ctx: AdminContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://admin');
  const path = url.pathname;
  const method = req.method ?? 'GET';
  if (await openEndpoint(ctx, path, method, res)) return;
  if (await serveUi(ctx.ui, path, req, res)) return;
  authorize(ctx, req, res);
  if (await listEndpoint(ctx, url, method, res)) return;
  let m = /^\/v1\/domains\/([^/]+)(\/issue)?$/.exec(path);
  if (m) return domainEndpoint(ctx, domainParam(m[1]!), Boolean(m[2]), method, url, req, res);
  m = /^\/v1\/certificates\/([^/]+)(\/renew)?$/.exec(path);
  if (m) return certificateEndpoint(ctx, certificateParam(ctx, m[1]!), Boolean(m[2]), method, url, res);
  if (path === '/v1/webhooks/deliveries') {
    if (method !== 'GET') throw methodNotAllowed('GET');
    const page = await webhookDeliveries(ctx.deps.storage, url.searchParams);
    return 'error' in page ? send(res, 400, page) : send(res, 200, page);
  }
  throw new HttpError(404, `no such endpoint: ${method} ${path} (see /openapi.json)`);
}

/** Step 1: the endpoints open to anyone (load balancers, tooling). */
async function openEndpoint(ctx: AdminContext, path: string, method: string, res: ServerResponse): Promise<boolean> {
  if (method !== 'GET') return false;
  if (path === '/healthz') {
    send(res, 200, { status: 'ok' });
    return true;
  }
  if (path === '/readyz') {
    const problems: string[] = [];
    if (ctx.deps.listenersUp && !ctx.deps.listenersUp()) problems.push('listeners are not up');
    try {
      await withTimeout(ctx.deps.storage.get(keys.ticketSecret), 2000);
    } catch (err) {
      problems.push(`storage: ${(err as Error).message}`);
    }
    if (problems.length) send(res, 503, { status: 'not ready', error: problems.join('; ') });
    else send(res, 200, { status: 'ready' });
    return true;
  }
  if (path === '/openapi.json') {
    send(res, 200, openApiDocument());
    return true;
  }
  return false;
}

/** Step 2: throws 401/403 unless the request may use the API. */
function authorize(ctx: AdminContext, req: IncomingMessage, res: ServerResponse): void {
  if (ctx.tokenDigest) {
    if (authorized(req.headers.authorization, ctx.tokenDigest)) return;
    res.setHeader('www-authenticate', 'Bearer realm="certgate"');
    throw new HttpError(401, 'missing or wrong bearer token (Authorization: Bearer <admin.token>)');
  }
  // Open on loopback: refuse what a web page in a local browser could send (DNS rebinding
  // gives a foreign Host; a cross-site form POST carries Origin), as Caddy's admin API does.
  if (!isLoopback(hostOf(req.headers.host))) throw new HttpError(403, 'without admin.token only Host: 127.0.0.1, [::1] or localhost is accepted', 'host');
  if (req.headers.origin !== undefined) throw new HttpError(403, 'browser requests (with an Origin header) need admin.token', 'origin');
}

/** Step 3: metrics, the event stream and the list of bindings. */
async function listEndpoint(ctx: AdminContext, url: URL, method: string, res: ServerResponse): Promise<boolean> {
  if (method !== 'GET') return false;
  const { metrics, registry } = ctx.deps;
  if (url.pathname === '/metrics') {
    if (!metrics) throw new HttpError(404, 'metrics are not available in this build');
    const text = await metrics.render();
    res.writeHead(200, { 'content-type': metrics.contentType }).end(text);
    return true;
  }
  if (url.pathname === '/v1/events') {
    if (ctx.stream.add(res)) return true;
    res.setHeader('retry-after', '30');
    throw new HttpError(503, `too many event stream clients: ${ctx.stream.clients} of admin.maxEventClients (${ctx.stream.maxClients}) are connected; close one or raise the limit`);
  }
  if (url.pathname === '/v1/events/recent' || url.pathname === '/v1/stats') {
    send(res, 200, await dashboardData(ctx, url));
    return true;
  }
  if (url.pathname !== '/v1/domains') return false;
  const limitText = url.searchParams.get('limit');
  const limit = limitText === null ? 100 : Number(limitText);
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE) throw new HttpError(400, `limit must be a whole number from 1 to ${MAX_PAGE}`, 'limit');
  const cursor = url.searchParams.get('cursor') ?? '';
  if (cursor !== '' && !/^(\*\.)?[a-z0-9.-]{1,253}$/.test(cursor)) throw new HttpError(400, 'cursor must be the nextCursor of a previous page', 'cursor');
  const q = url.searchParams.get('q')?.trim().toLowerCase() ?? '';
  if (q.length > 253) throw new HttpError(400, 'q must be at most 253 characters', 'q');
  const statusParam = url.searchParams.get('status');
  if (statusParam !== null && !HOSTNAME_STATUSES.includes(statusParam as HostnameStatus)) throw new HttpError(400, `status must be one of ${HOSTNAME_STATUSES.join(', ')}`, 'status');
  send(res, 200, statusParam === null ? await hostnamePage(ctx, registry, cursor, limit, q) : await filteredPage(ctx, registry, cursor, limit, statusParam as HostnameStatus, q));
  return true;
}

/** One page of hostnames with their statuses, from storage only (no DNS: the list must stay cheap). */
async function hostnamePage(ctx: AdminContext, registry: DomainRegistry, cursor: string, limit: number, q: string): Promise<{ items: Hostname[]; nextCursor: string | null }> {
  const page = await registry.list({ ...(cursor ? { cursor } : {}), limit, ...(q ? { contains: q } : {}) });
  const items = new Array<Hostname>(page.items.length);
  await forEachConcurrently([...page.items.keys()], STATUS_READS, async (i) => {
    items[i] = await hostnameView(ctx, page.items[i]!, ctx.hostnames.last(page.items[i]!.name));
  });
  return { items, nextCursor: page.nextCursor };
}

/**
 * ?status=: reads pages in name order and keeps the matching hostnames, until `limit` match or
 * MAX_FILTER_SCAN bindings were read. A page may so hold fewer than `limit` items (even none)
 * with a nextCursor: the list goes on from there; only a null nextCursor means the end.
 */
async function filteredPage(ctx: AdminContext, registry: DomainRegistry, cursor: string, limit: number, status: HostnameStatus, q: string): Promise<{ items: Hostname[]; nextCursor: string | null }> {
  const items: Hostname[] = [];
  let next: string | null = cursor;
  for (let scanned = 0; next !== null && scanned < MAX_FILTER_SCAN && items.length < limit; ) {
    const page = await hostnamePage(ctx, registry, next, Math.min(limit - items.length, MAX_PAGE), q);
    scanned += page.items.length;
    items.push(...page.items.filter((h) => h.status === status));
    next = page.nextCursor;
  }
  return { items, nextCursor: next === '' ? null : next };
}

/** A binding as the admin API answers it: status from storage, the given check results (see hostname-status.ts). */
async function hostnameView(ctx: AdminContext, binding: DomainBinding, checks: CheckResults | undefined): Promise<Hostname> {
  const { manager } = ctx.deps;
  const [stored, failure] = await Promise.all([manager.storedCertificate(binding.name), manager.failureRecord(binding.name)]);
  const certificate = stored ? { notAfter: stored.meta.notAfter, issuer: issuerOf(stored.certPem), ca: stored.meta.ca } : null;
  return describeHostname({ binding, certificate, failure, checks }, ctx.hostnames.context);
}

/**
 * Step 3, for the dashboard: GET /v1/events/recent (?domain=, ?limit= up to 500: this admin
 * API's recent events, newest first) and GET /v1/stats (certificates expiring per day over the
 * next 90 days; issuances and failures per hour over the last 48, since this admin API started).
 */
async function dashboardData(ctx: AdminContext, url: URL): Promise<object> {
  const { activity } = ctx;
  if (url.pathname === '/v1/stats') return { expiringPerDay: await ctx.expiry.perDay(90), perHour: activity.perHour(48), since: activity.since };
  const limitText = url.searchParams.get('limit');
  const limit = limitText === null ? 100 : Number(limitText);
  if (!Number.isInteger(limit) || limit < 1 || limit > 500) throw new HttpError(400, 'limit must be a whole number from 1 to 500', 'limit');
  const domain = url.searchParams.get('domain');
  return { events: activity.recent(domain === null ? undefined : domainParam(domain), limit), since: activity.since };
}

/** Step 4: one domain binding, or (POST .../issue) a certificate for it now. */
async function domainEndpoint(ctx: AdminContext, name: string, issue: boolean, method: string, url: URL, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const { registry, manager, upstreamAllow } = ctx.deps;
  if (issue) {
    if (method !== 'POST') throw methodNotAllowed('POST');
    await refuseIfDisabled(ctx, name, 'issue');
    const outcome = ctx.deps.dcv ? await issueWithDelegation(ctx, ctx.deps.dcv, name) : await manager.obtain(name);
    if (outcome.kind === 'denied') throw new HttpError(403, `policy denies ${name}: ${outcome.reason}`, 'name');
    if (outcome.kind === 'failed') throw new HttpError(502, `could not obtain a certificate for ${name}: ${outcome.reason}`);
    return send(res, 200, { source: outcome.source, certificate: await certificateStatus(ctx, name) });
  }
  if (method === 'GET') return getDomain(ctx, name, url, res);
  if (method === 'PUT') {
    if (name.startsWith('*.') && !ctx.deps.dcv) {
      throw new HttpError(400, `${name}: a wildcard binding needs DCV delegation (acme.dns.delegation.zone): only dns-01 can validate a wildcard`, 'name');
    }
    const body = parseBody(bindingInputSchema, await readJson(req));
    if (body.upstream !== undefined) {
      // Literal addresses are checked now; host names when the proxy resolves them.
      const target = parseUpstream(body.upstream);
      const refusal = isIP(target.hostname) === 0 ? undefined : upstreamAllow.refusal(target.hostname, target.port);
      if (refusal !== undefined) throw new HttpError(400, `upstream ${target.origin} for ${name}: ${refusal}`, 'upstream');
    }
    const { binding, created } = await registry.put(name, body);
    // Checked at bind, so the answer already says what the owner must fix.
    const checked = await ctx.hostnames.run(binding);
    return send(res, created ? 201 : 200, await hostnameView(ctx, checked.binding, checked.results));
  }
  if (method === 'DELETE') {
    // Registry first: once every instance hears it, none approves or routes the name again;
    // then the certificate goes (storage, and every instance's memory through the bus).
    const existed = await registry.remove(name);
    ctx.hostnames.forget(name);
    await manager.delete(name, 'unbound');
    if (!existed) return send(res, 404, { error: `${name} was not bound` });
    res.writeHead(204).end();
    return;
  }
  throw methodNotAllowed('GET, PUT, DELETE');
}

/** GET /v1/domains/{name}[?check=true]: the hostname, its checks re-run first when asked. */
async function getDomain(ctx: AdminContext, name: string, url: URL, res: ServerResponse): Promise<void> {
  const check = url.searchParams.get('check');
  if (check !== null && check !== 'true' && check !== 'false') throw new HttpError(400, 'check must be true or false', 'check');
  let binding = await ctx.deps.registry.get(name);
  if (!binding) return send(res, 404, { error: `${name} is not bound` });
  let checks = ctx.hostnames.last(name);
  if (check === 'true') ({ binding, results: checks } = await ctx.hostnames.run(binding));
  const view = await hostnameView(ctx, binding, checks);
  const dcv = ctx.deps.dcv;
  return send(res, 200, dcv ? { ...view, dcv: { ...dcv.record(name), ready: await dcv.ready(name) } } : view);
}

/**
 * POST .../issue with DCV delegation configured. A bound name whose CNAME is in place is ordered
 * by dns-01 through the delegation zone (its A/AAAA may point elsewhere). Without the CNAME, a
 * wildcard cannot be validated at all and a plain name only if it points here: otherwise no order
 * (it could only fail and spend the CA's failed-validation limit), and a 422 naming the records.
 */
async function issueWithDelegation(ctx: AdminContext, dcv: AdminDcv, name: string): ReturnType<AdminManager['obtain']> {
  const { registry, manager } = ctx.deps;
  const record = dcv.record(name);
  const cname = `${record.name} CNAME ${record.target}`;
  if (await dcv.ready(name)) {
    if (!(await registry.get(name))?.enabled) throw new HttpError(404, `${name} is not bound: bind it (PUT /v1/domains/${name}) before issuing through DCV delegation`, 'name');
    if (!manager.obtainDelegated) throw new HttpError(501, `${name}: this certificate manager cannot issue through DCV delegation`, 'name');
    return manager.obtainDelegated(name);
  }
  if (name.startsWith('*.')) throw new DcvMissing(`${name}: no order placed: create ${cname} (a wildcard can only be validated through DCV delegation)`, [record]);
  const here = await dcv.pointsHere(name);
  if (!here.ok) {
    throw new DcvMissing(`${name}: no order placed: neither ${cname} is in place nor do its A/AAAA records point at this platform (${here.reason}); create the CNAME (or point A/AAAA here)`, [record, { name, type: 'A/AAAA', target: 'this platform' }]);
  }
  return manager.obtain(name);
}

/** 422 naming the DNS records the customer must create before an order can succeed. */
class DcvMissing extends HttpError {
  constructor(
    message: string,
    readonly records: Array<{ name: string; type: string; target: string }>,
  ) {
    super(422, message, 'name');
  }
}

/**
 * A disabled binding's certificate is not served (every instance drops it from memory). Issuing
 * or renewing it would load it into this instance's memory, from where handshakes are answered
 * without asking again, so both wait until the binding is active again.
 */
async function refuseIfDisabled(ctx: AdminContext, name: string, action: 'issue' | 'renew'): Promise<void> {
  if ((await ctx.deps.registry.get(name))?.enabled !== false) return;
  throw new HttpError(409, `${name} is disabled: set its binding's enabled to true before you ${action} its certificate`, 'name');
}

/** Step 5: one stored certificate: its status, a renewal now, or its deletion (and revocation). */
async function certificateEndpoint(ctx: AdminContext, name: string, renew: boolean, method: string, url: URL, res: ServerResponse): Promise<void> {
  const { manager } = ctx.deps;
  if (renew) {
    if (method !== 'POST') throw methodNotAllowed('POST');
    await refuseIfDisabled(ctx, name, 'renew');
    const outcome = await manager.renew(name, { reason: 'admin' });
    if (outcome.kind !== 'ready') throw new HttpError(502, `could not renew ${name}: ${outcome.reason}`);
    return send(res, 200, await certificateStatus(ctx, name));
  }
  if (method === 'GET') {
    const status = await certificateStatus(ctx, name);
    // No certificate: the failures (if any) say why.
    return status ? send(res, 200, status) : send(res, 404, { error: `no certificate for ${name}`, ...(await failuresOf(ctx, name)) });
  }
  if (method !== 'DELETE') throw methodNotAllowed('GET, DELETE');
  const revokeParam = url.searchParams.get('revoke');
  if (revokeParam !== null && revokeParam !== 'true' && revokeParam !== 'false') throw new HttpError(400, 'revoke must be true or false', 'revoke');
  const stored = await manager.storedCertificate(name);
  if (!stored) return send(res, 404, { error: `no certificate for ${name}` });
  if (revokeParam === 'true') {
    try {
      // At the CA that issued it, with that issuer's account.
      await manager.revoke(stored);
    } catch (err) {
      throw new HttpError(502, `could not revoke the certificate for ${name} at CA ${stored.ca} (nothing deleted): ${(err as Error).message}`);
    }
  }
  await manager.delete(name, revokeParam === 'true' ? 'admin-revoked' : 'admin');
  res.writeHead(204).end();
}

/**
 * Attempts, last error and next retry come from the manager's retry state in storage, so every
 * instance answers the same, before and after a restart.
 */
async function failuresOf(ctx: AdminContext, domain: string): Promise<FailureHistory> {
  return failureHistory(await ctx.deps.manager.failureRecord(domain));
}

async function certificateStatus(ctx: AdminContext, domain: string): Promise<CertificateStatus | null> {
  // Under whichever issuer's CA holds it: a fallback issuer's certificates too.
  const stored = await ctx.deps.manager.storedCertificate(domain);
  if (!stored) return null;
  const { meta, certPem } = stored;
  const renewal = ctx.nextRenewal(meta);
  return {
    domain,
    ca: meta.ca,
    directory: meta.directory,
    issuer: issuerOf(certPem),
    names: meta.names,
    serialNumber: meta.serialNumber,
    fingerprint256: meta.fingerprint256,
    keyType: meta.keyType,
    notBefore: meta.notBefore,
    notAfter: meta.notAfter,
    obtainedAt: meta.obtainedAt,
    nextRenewal: renewal ? renewal.toISOString() : null,
    cached: ctx.deps.cache.peek(domain) !== undefined,
    ...(await failuresOf(ctx, domain)),
  };
}

/** The leaf's issuer, e.g. "CN=Pebble Intermediate CA 1a2b3c". */
function issuerOf(certPem: string): string | null {
  try {
    return new X509Certificate(certPem).issuer.replace(/\n/g, ', ');
  } catch {
    return null;
  }
}

/** Host header without its port ("[::1]:2019" → "::1"). */
function hostOf(header: string | undefined): string {
  const host = header ?? '';
  if (host.startsWith('[')) return host.slice(1, host.indexOf(']'));
  return host.replace(/:\d+$/, '');
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

/** Constant time whatever the lengths: both sides are hashed to 32 bytes first. */
function authorized(header: string | undefined, tokenDigest: Buffer): boolean {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  return timingSafeEqual(sha256(m?.[1] ?? ''), tokenDigest) && m !== null;
}

function domainParam(raw: string): string {
  let decoded: string;
  try {
    decoded = decodeURIComponent(raw);
  } catch {
    throw new HttpError(400, 'name is not valid percent-encoding', 'name');
  }
  try {
    return DomainRegistry.normalize(decoded);
  } catch (err) {
    if (err instanceof InvalidDomainError) throw new HttpError(400, err.message, 'name');
    throw err;
  }
}

/**
 * The name a /v1/certificates/:name call is about: a managed entry's names (`*.x` included) are
 * its first name, under which its certificate and failures are kept.
 */
function certificateParam(ctx: AdminContext, raw: string): string {
  const wildcard = /^(\*|%2a)\./i.exec(raw);
  const name = wildcard ? `*.${domainParam(raw.slice(wildcard[0].length))}` : domainParam(raw);
  return ctx.deps.manager.certificateKey?.(name) ?? name;
}

function methodNotAllowed(allowed: string): HttpError {
  return new HttpError(405, `method not allowed here; use ${allowed}`);
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const type = req.headers['content-type'] ?? '';
  if (!/^application\/json\b/i.test(type)) throw new HttpError(415, 'send the body as application/json', 'content-type');
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new HttpError(413, `body over ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') return {};
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new HttpError(400, `body is not valid JSON: ${(err as Error).message}`, 'body');
  }
}

function parseBody<S extends z.ZodType>(schema: S, value: unknown): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  // An unknown key names itself; other issues name their path.
  const keysOf = (issue as { keys?: string[] }).keys;
  const field = keysOf?.length ? keysOf.join(', ') : issue.path.join('.') || 'body';
  throw new HttpError(400, `${field}: ${issue.message}`, field);
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body, null, 2) + '\n';
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' }).end(text);
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
