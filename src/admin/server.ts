// The admin API (node:http, JSON) on `listen.admin`: domain bindings, certificates, health,
// metrics and an event stream. See /openapi.json (src/admin/openapi.ts) and docs/config.md.
//
// Auth: `Authorization: Bearer <admin.token>`, compared in constant time. Without a token the
// API is open to whoever can reach it, so it refuses to start on a non-loopback address without
// one. /healthz, /readyz and /openapi.json are always open (load balancers, tooling).
import { createHash, timingSafeEqual, X509Certificate } from 'node:crypto';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer } from '../util/node-http.ts';
import { isIP, type AddressInfo } from 'node:net';
import type { z } from 'zod';
import type { CertificateEvent, CertificateEvents } from '../events.ts';
import type { Logger } from '../log.ts';
import { DomainRegistry, InvalidDomainError, type RegistryChange } from '../policy/registry.ts';
import { bindingInputSchema } from './bindings.ts';
import { parseUpstream } from '../proxy/routes.ts';
import type { UpstreamAllowList } from '../proxy/upstream-allow.ts';
import { failureHistory, type CertificateStatus, type FailureHistory } from './certificate-status.ts';
import type { CertificateMeta } from '../issuance/store.ts';
import { keys } from '../storage/keys.ts';
import { StorageError, type Storage } from '../storage/storage.ts';
import type { CertificateCache } from '../tls/cache.ts';
import type { CertificateManager } from '../issuance/manager.ts';
import type { ClusterBus } from '../storage/bus.ts';
import { openApiDocument } from './openapi.ts';
import { onRelayedEvents } from './relay.ts';
import { EventStream } from './sse.ts';

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

export interface AdminServerOptions {
  host: string;
  port: number;
  /** Bearer token; undefined = no auth (loopback only). */
  token?: string;
  storage: Storage;
  registry: DomainRegistry;
  manager: CertificateManager;
  cache: CertificateCache;
  events: CertificateEvents;
  /** When given, the event stream carries every process's events (relayed on this bus). */
  bus?: ClusterBus;
  logger: Logger;
  metrics?: MetricsSource;
  /** `proxy.upstreamAllow`: a binding whose upstream is an IP literal it refuses gets 400. */
  upstreamAllow: UpstreamAllowList;
  /** Readiness beyond storage: e.g. the gateway's listeners are up. */
  listenersUp: () => boolean;
  /** Seam for the renewal scheduler. */
  nextRenewal?: (meta: CertificateMeta) => Date | null;
  keepAliveMs?: number;
  /** Cap on GET /v1/events clients at once (admin.maxEventClients); over it: 503. Default 100. */
  maxEventClients?: number;
}

export interface AdminServer {
  readonly port: number;
  readonly host: string;
  close(): Promise<void>;
}

const MAX_BODY_BYTES = 64 * 1024;
const MAX_PAGE = 1000;

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  if (isIP(host) === 6) return host === '::1' || host === '0:0:0:0:0:0:0:1';
  return false;
}

export async function startAdminServer(opts: AdminServerOptions): Promise<AdminServer> {
  const { registry, manager, storage, cache, logger } = opts;
  if (!opts.token && !isLoopback(opts.host)) {
    throw new Error(
      `listen.admin is ${opts.host}:${opts.port}, not a loopback address, and there is no admin token: set admin.token (or CERTGATE_ADMIN_TOKEN), or bind the admin API to 127.0.0.1`,
    );
  }
  const tokenDigest = opts.token ? sha256(opts.token) : undefined;
  const nextRenewal = opts.nextRenewal ?? defaultNextRenewal;
  const stream = new EventStream({
    ...(opts.keepAliveMs ? { keepAliveMs: opts.keepAliveMs } : {}),
    ...(opts.maxEventClients !== undefined ? { maxClients: opts.maxEventClients } : {}),
  });

  const onEvent = (event: CertificateEvent) => stream.send(event.type, event);
  // Every process's events through the bus when there is one (see relay.ts), else this one's.
  const stopEvents = opts.bus ? await onRelayedEvents(opts.bus, onEvent) : opts.events.on(onEvent);
  // Attempts, last error and next retry come from the manager's retry state in storage, so every
  // instance answers the same, before and after a restart.
  const failuresOf = async (domain: string): Promise<FailureHistory> => failureHistory(await manager.failureRecord(domain));
  const stopRegistry = registry.onChange((change: RegistryChange) => {
    stream.send(change.type, { ...change, at: new Date().toISOString() });
  });

  async function certificateStatus(domain: string): Promise<CertificateStatus | null> {
    // Under whichever issuer's CA holds it: a fallback issuer's certificates too.
    const stored = await manager.storedCertificate(domain);
    if (!stored) return null;
    const { meta, certPem } = stored;
    const renewal = nextRenewal(meta);
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
      cached: cache.peek(domain) !== undefined,
      ...(await failuresOf(domain)),
    };
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://admin');
    const path = url.pathname;
    const method = req.method ?? 'GET';

    // Open endpoints.
    if (path === '/healthz' && method === 'GET') return send(res, 200, { status: 'ok' });
    if (path === '/readyz' && method === 'GET') {
      const problems: string[] = [];
      if (!opts.listenersUp()) problems.push('listeners are not up');
      try {
        await withTimeout(storage.get(keys.ticketSecret), 2000);
      } catch (err) {
        problems.push(`storage: ${(err as Error).message}`);
      }
      return problems.length ? send(res, 503, { status: 'not ready', error: problems.join('; ') }) : send(res, 200, { status: 'ready' });
    }
    if (path === '/openapi.json' && method === 'GET') return send(res, 200, openApiDocument());

    if (tokenDigest && !authorized(req.headers.authorization, tokenDigest)) {
      res.setHeader('www-authenticate', 'Bearer realm="certgate"');
      throw new HttpError(401, 'missing or wrong bearer token (Authorization: Bearer <admin.token>)');
    }
    if (!tokenDigest) {
      // Open on loopback: refuse what a web page in a local browser could send (DNS rebinding
      // gives a foreign Host; a cross-site form POST carries Origin), as Caddy's admin API does.
      if (!isLoopback(hostOf(req.headers.host))) throw new HttpError(403, 'without admin.token only Host: 127.0.0.1, [::1] or localhost is accepted', 'host');
      if (req.headers.origin !== undefined) throw new HttpError(403, 'browser requests (with an Origin header) need admin.token', 'origin');
    }

    if (path === '/metrics' && method === 'GET') {
      if (!opts.metrics) throw new HttpError(404, 'metrics are not available in this build');
      const text = await opts.metrics.render();
      res.writeHead(200, { 'content-type': opts.metrics.contentType }).end(text);
      return;
    }
    if (path === '/v1/events' && method === 'GET') {
      if (stream.add(res)) return;
      res.setHeader('retry-after', '30');
      throw new HttpError(503, `too many event stream clients: ${stream.clients} of admin.maxEventClients (${stream.maxClients}) are connected; close one or raise the limit`);
    }
    if (path === '/v1/domains' && method === 'GET') {
      const limitText = url.searchParams.get('limit');
      const limit = limitText === null ? 100 : Number(limitText);
      if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE) throw new HttpError(400, `limit must be a whole number from 1 to ${MAX_PAGE}`, 'limit');
      const cursor = url.searchParams.get('cursor') ?? '';
      if (cursor !== '' && !/^[a-z0-9.-]{1,253}$/.test(cursor)) throw new HttpError(400, 'cursor must be the nextCursor of a previous page', 'cursor');
      return send(res, 200, await registry.list({ ...(cursor ? { cursor } : {}), limit }));
    }

    let m = /^\/v1\/domains\/([^/]+)(\/issue)?$/.exec(path);
    if (m) {
      const name = domainParam(m[1]!);
      if (m[2]) {
        if (method !== 'POST') throw methodNotAllowed('POST');
        const outcome = await manager.obtain(name);
        if (outcome.kind === 'denied') throw new HttpError(403, `policy denies ${name}: ${outcome.reason}`, 'name');
        if (outcome.kind === 'failed') throw new HttpError(502, `could not obtain a certificate for ${name}: ${outcome.reason}`);
        return send(res, 200, { source: outcome.source, certificate: await certificateStatus(name) });
      }
      if (method === 'GET') {
        const binding = await registry.get(name);
        return binding ? send(res, 200, binding) : send(res, 404, { error: `${name} is not bound` });
      }
      if (method === 'PUT') {
        const body = parseBody(bindingInputSchema, await readJson(req));
        if (body.upstream !== undefined) {
          // Literal addresses are checked now; host names when the proxy resolves them.
          const target = parseUpstream(body.upstream);
          const refusal = isIP(target.hostname) === 0 ? undefined : opts.upstreamAllow.refusal(target.hostname, target.port);
          if (refusal !== undefined) throw new HttpError(400, `upstream ${target.origin} for ${name}: ${refusal}`, 'upstream');
        }
        const { binding, created } = await registry.put(name, body);
        return send(res, created ? 201 : 200, binding);
      }
      if (method === 'DELETE') {
        // Registry first: once every instance hears it, none approves or routes the name again;
        // then the certificate goes (storage, and every instance's memory through the bus).
        const existed = await registry.remove(name);
        await manager.delete(name, 'unbound');
        if (!existed) return send(res, 404, { error: `${name} was not bound` });
        res.writeHead(204).end();
        return;
      }
      throw methodNotAllowed('GET, PUT, DELETE');
    }

    m = /^\/v1\/certificates\/([^/]+)(\/renew)?$/.exec(path);
    if (m) {
      const name = domainParam(m[1]!);
      if (m[2]) {
        if (method !== 'POST') throw methodNotAllowed('POST');
        const outcome = await manager.renew(name, { reason: 'admin' });
        if (outcome.kind !== 'ready') throw new HttpError(502, `could not renew ${name}: ${outcome.reason}`);
        return send(res, 200, await certificateStatus(name));
      }
      if (method === 'GET') {
        const status = await certificateStatus(name);
        // No certificate: the failures (if any) say why.
        return status ? send(res, 200, status) : send(res, 404, { error: `no certificate for ${name}`, ...(await failuresOf(name)) });
      }
      if (method === 'DELETE') {
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
        return;
      }
      throw methodNotAllowed('GET, DELETE');
    }
    throw new HttpError(404, `no such endpoint: ${method} ${path} (see /openapi.json)`);
  }

  const server: Server = createServer((req, res) => {
    const started = performance.now();
    handle(req, res).then(
      () => logger.debug({ step: 'admin', method: req.method, path: req.url, status: res.statusCode, ms: Math.round(performance.now() - started) }, 'admin call'),
      (err: unknown) => {
        if (err instanceof HttpError) {
          if (!res.headersSent) send(res, err.status, { error: err.message, ...(err.field ? { field: err.field } : {}) });
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
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: opts.host, port: opts.port }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  logger.info({ step: 'listen', admin: `${opts.host}:${port}`, auth: tokenDigest ? 'bearer' : 'none (loopback)' }, 'admin API listening');

  return {
    port,
    host: opts.host,
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
