// The listeners part: what faces the internet.
//   1. the fallback certificate (`tls.fallback`, or a self-signed one kept in storage)
//   2. the handshake path (src/tls/handshake.ts) and the reverse proxy (`proxy`)
//   3. the HTTPS listener: SNI picks the certificate, ALPN spots tls-alpn-01 validations and
//      picks h2 or http/1.1 by `tls.alpn` (https-server.ts)
//   4. the HTTP listener: http-01 challenges, pre-flight probes, else a redirect to HTTPS
//   5. session-ticket keys every worker and instance on this storage shares, rotated
//   6. listen: HTTPS first, then HTTP (`listen.https`, `listen.http`; SO_REUSEPORT in workers),
//      each guarded against slow and idle clients first (connections.ts); with
//      `listen.proxyProtocol`, both read trusted balancers' PROXY headers before anything else;
//      with `tls.denied: alert`, HTTPS connections whose ClientHello is certainly refused get the
//      alert before node:tls sees them (src/tls/early-refusal.ts)
// What it opens is closed by the gateway's stack in reverse: the servers drain (drain.ts: stop
// accepting, requests in flight finish within `shutdownTimeout`), then tickets, then the proxy.
// reconfigure() applies a reloaded config's routes, upstream and shutdownTimeout.
import type { Server as HttpServer, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { GatewayMetrics } from '../admin/metrics.ts';
import type { Config, ListenAddress } from '../config/schema.ts';
import type { Logger } from '../util/log.ts';
import { ProxyProtocolAcceptor } from '../net/proxy-protocol-listener.ts';
import { ReverseProxy } from '../proxy/proxy.ts';
import { UpstreamAllowList } from '../proxy/upstream-allow.ts';
import type { Storage } from '../storage/storage.ts';
import { loadFallbackCertificate } from '../tls/fallback.ts';
import { createHandshakeCallbacks, type HandshakeOutcome } from '../tls/handshake.ts';
import { EarlyRefusal } from '../tls/early-refusal.ts';
import { tlsServerOptions } from '../config/tls.ts';
import { loadTicketSecret, rotateTicketKeys } from '../tls/tickets.ts';
import { createServer as createHttpServer } from '../util/node-http.ts';
import { slowClientGuards } from './connections.ts';
import { createHttpsListenerServer, type HttpsListenerServer } from './https-server.ts';
import { ConnectionDrain } from './drain.ts';
import type { IssuancePart } from './issuance.ts';
import type { PolicyPart } from './policy.ts';

/** The listeners part once listening. */
export interface ListenersPart {
  readonly proxy: ReverseProxy;
  /** Where registry upstreams may point (`proxy.upstreamAllow`; never the admin API). */
  readonly upstreamAllow: UpstreamAllowList;
  /** The bound ports (the configured ones, or the ones the OS chose for port 0). */
  readonly httpsPort: number;
  readonly httpPort: number;
  /** Both listeners are accepting connections (readiness). */
  listening(): boolean;
  /** A reloaded config: `proxy.routes`/`upstream` for the next request, `shutdownTimeout` for the next stop. Throws (nothing changed) on an invalid route. */
  reconfigure(config: Pick<Config, 'proxy' | 'shutdownTimeout'>): void;
}

/** What the listeners work with. */
export interface ListenersDeps {
  storage: Storage;
  logger: Logger;
  policy: PolicyPart;
  issuance: IssuancePart;
  metrics: GatewayMetrics;
  /** The admin API's address when this process serves it (registry upstreams may not point there). */
  adminAddress: ListenAddress | undefined;
  /** Bind with SO_REUSEPORT (cluster workers share the ports). */
  reusePort: boolean;
  onHandshake?: (outcome: HandshakeOutcome, domain: string | undefined) => void;
}

/** Builds the listeners and binds them; everything it opens is closed by `stack`. */
export async function openListeners(config: Config, deps: ListenersDeps, stack: AsyncDisposableStack): Promise<ListenersPart> {
  const { storage, logger, issuance } = deps;
  const fallback = await loadFallbackCertificate(storage, config.tls.fallback);
  // Registry upstreams are set through the admin API, possibly from customer input: where they
  // may point is checked (the admin API itself never).
  const upstreamAllow = new UpstreamAllowList({
    ...(config.proxy.upstreamAllow ? { allow: config.proxy.upstreamAllow } : {}),
    ...(deps.adminAddress ? { admin: deps.adminAddress } : {}),
  });
  const proxy = new ReverseProxy(config.proxy, { logger, dynamicRoutes: deps.policy.registry, fallbackCert: fallback.certPem, upstreamAllow, onResponse: deps.metrics.proxied });
  stack.defer(() => proxy.close());
  const guards = slowClientGuards(config, deps);
  const early = config.tls.denied === 'alert' ? new EarlyRefusal({ cache: issuance.cache, manager: issuance.manager, managed: issuance.managed, protocols: config.tls.alpn, onOutcome: handshakeOutcome(deps) }) : undefined;
  const https = createHttpsListenerServer(
    // The fallback is also served when the client sends no SNI at all.
    { cert: fallback.certPem, key: fallback.keyPem, ...tlsServerOptions(config.tls) },
    guards.tlsOptions(handshakeCallbacks(config, deps, fallback.context, early)),
    proxy,
    logger,
  );
  const http = createHttpServer((req, res) => {
    if (issuance.http01?.handle(req, res)) return;
    // Every instance answers pre-flight probes, whichever one placed the token.
    if (issuance.preflightResponder.handle(req, res)) return;
    redirectToHttps(req.headers.host, req.url ?? '/', config.listen.https.port, res);
  });
  // It takes over node:tls's 'connection' listener only: the drain, the guards (handshake deadline
  // from the accept, connection cap) listen after it and see every connection at once; the PROXY
  // header reading below comes before all of them.
  early?.wire(https);
  // Session tickets every worker and instance on this storage can decrypt.
  stack.defer(rotateTicketKeys([https], await loadTicketSecret(storage), config.tls.ticketKeyRotation, logger));
  const drain = new ConnectionDrain();
  drain.track(https, true);
  drain.track(http, false);
  let shutdownTimeoutMs = config.shutdownTimeout;
  stack.defer(async () => {
    const { cut } = await drain.drain(shutdownTimeoutMs);
    if (cut > 0) logger.warn({ step: 'drain', cut, shutdownTimeoutMs }, `${cut} requests still in flight at shutdownTimeout were cut off`);
  });
  guards.guard(https, 'https');
  guards.guard(http, 'http');
  // After the guards: a trusted balancer's connection reaches them (and TLS) once its PROXY
  // header is read, so the handshake deadline starts there (the header has its own 5 s).
  const proxyProtocol = new ProxyProtocolAcceptor({ trusted: config.listen.proxyProtocol?.trusted ?? [], logger });
  proxyProtocol.wire(https, 'https');
  proxyProtocol.wire(http, 'http');
  await listen(https, config.listen.https, deps.reusePort);
  await listen(http, config.listen.http, deps.reusePort);
  // Runs first: connections still owing a PROXY header would hold the servers' close.
  stack.defer(() => {
    proxyProtocol.close();
    early?.close();
  });
  return {
    proxy,
    upstreamAllow,
    httpsPort: (https.address() as AddressInfo).port,
    httpPort: (http.address() as AddressInfo).port,
    listening: () => https.listening && http.listening,
    reconfigure(next) {
      proxy.setRoutes(next.proxy.routes, next.proxy.upstream);
      shutdownTimeoutMs = next.shutdownTimeout;
    },
  };
}

function handshakeCallbacks(config: Config, deps: ListenersDeps, fallback: import('node:tls').SecureContext, early: EarlyRefusal | undefined) {
  const report = handshakeOutcome(deps);
  const { registry, limits } = deps.policy;
  const { SNICallback, ALPNCallback } = createHandshakeCallbacks({
    cache: deps.issuance.cache,
    manager: deps.issuance.manager,
    managed: deps.issuance.managed,
    tlsAlpn: deps.issuance.tlsAlpn,
    protocols: config.tls.alpn,
    fallback,
    handshakeWaitMs: config.onDemand.handshakeWait,
    denied: config.tls.denied,
    logger: deps.logger,
    limits,
    isDisabled: async (domain) => (await registry.get(domain))?.enabled === false,
    // The SNI callback's refusals turn the early refusal on under a flood (its step 0).
    onOutcome: early
      ? (outcome, domain) => {
          if (outcome === 'refused') early.noteRefusal();
          report(outcome, domain);
        }
      : report,
  });
  return { SNICallback, ALPNCallback };
}

/** Where each handshake's outcome goes: the metrics, and the caller's hook when it has one. */
function handshakeOutcome({ metrics, onHandshake }: ListenersDeps): (outcome: HandshakeOutcome, domain: string | undefined) => void {
  if (!onHandshake) return metrics.handshake;
  return (outcome, domain) => {
    metrics.handshake(outcome);
    onHandshake(outcome, domain);
  };
}

function redirectToHttps(hostHeader: string | undefined, path: string, httpsPort: number, res: ServerResponse): void {
  const host = (hostHeader ?? '').replace(/:\d+$/, '');
  if (!host || /[^a-zA-Z0-9.\-[\]:]/.test(host)) {
    res.writeHead(400, { 'content-type': 'text/plain' }).end('400 Bad Request: missing or invalid Host header\n');
    return;
  }
  const port = httpsPort === 443 ? '' : `:${httpsPort}`;
  res.writeHead(308, { location: `https://${host}${port}${path.startsWith('/') ? path : '/'}`, 'content-type': 'text/plain' }).end('Redirecting to HTTPS\n');
}

function listen(server: HttpServer | HttpsListenerServer, { host, port }: ListenAddress, reusePort: boolean): Promise<void> {
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
