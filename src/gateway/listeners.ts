// The listeners part: what faces the internet.
//   1. the fallback certificate (`tls.fallback`, or a self-signed one kept in storage)
//   2. the handshake path (src/tls/handshake.ts) and the reverse proxy (`proxy`)
//   3. the HTTPS listener: SNI picks the certificate, ALPN spots tls-alpn-01 validations
//   4. the HTTP listener: http-01 challenges, pre-flight probes, else a redirect to HTTPS
//   5. session-ticket keys every worker and instance on this storage shares, rotated
//   6. listen: HTTPS first, then HTTP (`listen.https`, `listen.http`; SO_REUSEPORT in workers),
//      each guarded against slow and idle clients first (connections.ts); with
//      `listen.proxyProtocol`, both read trusted balancers' PROXY headers before anything else
// What it opens is closed by the gateway's stack in reverse: servers, then tickets, then proxy.
import type { Server as HttpServer, ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { GatewayMetrics } from '../admin/metrics.ts';
import type { Config, ListenAddress } from '../config/schema.ts';
import type { Logger } from '../util/log.ts';
import { clientAddress } from '../net/client-address.ts';
import { ProxyProtocolAcceptor } from '../net/proxy-protocol-listener.ts';
import { ReverseProxy } from '../proxy/proxy.ts';
import { UpstreamAllowList } from '../proxy/upstream-allow.ts';
import type { Storage } from '../storage/storage.ts';
import { loadFallbackCertificate } from '../tls/fallback.ts';
import { ACME_TLS_ALPN, createHandshakeCallbacks, type HandshakeOutcome } from '../tls/handshake.ts';
import { tlsServerOptions } from '../config/tls.ts';
import { loadTicketSecret, rotateTicketKeys } from '../tls/tickets.ts';
import { createServer as createHttpServer } from '../util/node-http.ts';
import { slowClientGuards } from './connections.ts';
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
  const https = createHttpsServer(
    // The fallback is also served when the client sends no SNI at all.
    { cert: fallback.certPem, key: fallback.keyPem, ...tlsServerOptions(config.tls), ...guards.tlsOptions(handshakeCallbacks(config, deps, fallback.context)) },
    (req, res) => proxy.handleRequest(req, res),
  );
  wireHttps(https, proxy, logger);
  const http = createHttpServer((req, res) => {
    if (issuance.http01?.handle(req, res)) return;
    // Every instance answers pre-flight probes, whichever one placed the token.
    if (issuance.preflightResponder.handle(req, res)) return;
    redirectToHttps(req.headers.host, req.url ?? '/', config.listen.https.port, res);
  });
  // Session tickets every worker and instance on this storage can decrypt.
  stack.defer(rotateTicketKeys([https], await loadTicketSecret(storage), config.tls.ticketKeyRotation, logger));
  guards.guard(https, 'https');
  guards.guard(http, 'http');
  // After the guards: a trusted balancer's connection reaches them (and TLS) once its PROXY
  // header is read, so the handshake deadline starts there (the header has its own 5 s).
  const proxyProtocol = new ProxyProtocolAcceptor({ trusted: config.listen.proxyProtocol?.trusted ?? [], logger });
  proxyProtocol.wire(https, 'https');
  proxyProtocol.wire(http, 'http');
  await listen(https, config.listen.https, deps.reusePort);
  stack.defer(() => closeServer(https));
  await listen(http, config.listen.http, deps.reusePort);
  stack.defer(() => closeServer(http));
  // Runs first: connections still owing a PROXY header would hold the servers' close.
  stack.defer(() => proxyProtocol.close());
  return {
    proxy,
    upstreamAllow,
    httpsPort: (https.address() as AddressInfo).port,
    httpPort: (http.address() as AddressInfo).port,
    listening: () => https.listening && http.listening,
  };
}

function handshakeCallbacks(config: Config, deps: ListenersDeps, fallback: import('node:tls').SecureContext) {
  const { metrics, onHandshake } = deps;
  const { registry, limits } = deps.policy;
  const { SNICallback, ALPNCallback } = createHandshakeCallbacks({
    cache: deps.issuance.cache,
    manager: deps.issuance.manager,
    managed: deps.issuance.managed,
    tlsAlpn: deps.issuance.tlsAlpn,
    fallback,
    handshakeWaitMs: config.onDemand.handshakeWait,
    denied: config.tls.denied,
    logger: deps.logger,
    limits,
    isDisabled: async (domain) => (await registry.get(domain))?.enabled === false,
    onOutcome: onHandshake
      ? (outcome, domain) => {
          metrics.handshake(outcome);
          onHandshake(outcome, domain);
        }
      : metrics.handshake,
  });
  return { SNICallback, ALPNCallback };
}

function wireHttps(https: HttpsServer, proxy: ReverseProxy, logger: Logger): void {
  https.on('upgrade', (req, socket, head) => proxy.handleUpgrade(req, socket, head));
  // A tls-alpn-01 validation ends after the handshake; no HTTP follows.
  https.on('secureConnection', (socket: TLSSocket) => {
    if (socket.alpnProtocol === ACME_TLS_ALPN) socket.end();
  });
  https.on('tlsClientError', (err, socket) => {
    // One per refused handshake of a flood: build nothing unless it is logged.
    if (logger.isLevelEnabled('debug')) logger.debug({ step: 'tls-handshake', sni: (socket as TLSSocket).servername || undefined, remote: clientAddress(socket), err: err.message }, 'TLS handshake failed');
  });
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

function listen(server: HttpServer | HttpsServer, { host, port }: ListenAddress, reusePort: boolean): Promise<void> {
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
