// Wires one gateway: storage, policy, ACME issuer, handshake path, proxy and the listeners.
import { readFile } from 'node:fs/promises';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { AcmeIssuer } from './acme/issuer.ts';
import { Http01Solver, TlsAlpn01Solver } from './acme/solvers.ts';
import type { ChallengeSolver } from './acme/client.ts';
import type { LoadedConfig } from './config/load.ts';
import type { CertificateEvents } from './events.ts';
import { createLogger, type Logger } from './log.ts';
import { OnDemandPolicy } from './policy/policy.ts';
import { ReverseProxy } from './proxy/proxy.ts';
import { LocalBus, type ClusterBus } from './storage/bus.ts';
import { openStorage } from './storage/open.ts';
import type { Storage } from './storage/storage.ts';
import { CertificateCache } from './tls/cache.ts';
import { CertificateManager } from './tls/certificates.ts';
import { loadFallbackCertificate } from './tls/fallback.ts';
import { ACME_TLS_ALPN, createHandshakeCallbacks, type HandshakeOutcome } from './tls/handshake.ts';
import { loadTicketSecret, rotateTicketKeys } from './tls/tickets.ts';

export interface GatewayOptions {
  logger?: Logger;
  /** Use this storage instead of the configured one (tests wrap storage to count reads). */
  storage?: Storage;
  /** Cache-coherence bus; default: the storage's own (Redis pub/sub) or an in-process one. */
  bus?: ClusterBus;
  /** Bind with SO_REUSEPORT so several worker processes share the ports. */
  reusePort?: boolean;
  onHandshake?: (outcome: HandshakeOutcome, domain: string | undefined) => void;
}

export interface Gateway {
  readonly httpsPort: number;
  readonly httpPort: number;
  readonly storage: Storage;
  readonly cache: CertificateCache;
  readonly manager: CertificateManager;
  readonly issuer: AcmeIssuer;
  readonly policy: OnDemandPolicy;
  readonly proxy: ReverseProxy;
  readonly events: CertificateEvents;
  readonly logger: Logger;
  close(): Promise<void>;
}

export async function startGateway(config: LoadedConfig, options: GatewayOptions = {}): Promise<Gateway> {
  const logger = options.logger ?? createLogger({ level: config.log.level });
  const opened = options.storage ? { storage: options.storage } : await openStorage(config.storage, logger);
  const storage = opened.storage;
  const bus = options.bus ?? opened.bus ?? new LocalBus();
  const trustedRoots = await Promise.all(
    config.acme.trustedRoots.map((file) =>
      readFile(file, 'utf8').catch((err: Error) => {
        throw new Error(`acme.trustedRoots: cannot read ${file}: ${err.message}`);
      }),
    ),
  );

  const http01 = config.acme.challenges.includes('http-01') ? new Http01Solver(storage, logger) : null;
  const tlsAlpn = config.acme.challenges.includes('tls-alpn-01') ? new TlsAlpn01Solver(storage) : null;
  const solvers = config.acme.challenges.map((type): ChallengeSolver => (type === 'http-01' ? http01! : tlsAlpn!));

  const issuer = new AcmeIssuer({
    directory: config.acme.directory,
    ...(config.acme.email ? { email: config.acme.email } : {}),
    trustedRoots,
    ...(config.acme.eab ? { eab: config.acme.eab } : {}),
    keyType: config.acme.keyType,
    solvers,
    timeoutMs: config.acme.timeout,
    storage,
    logger,
  });
  const policy = new OnDemandPolicy({
    allow: config.onDemand.allow,
    ...(config.onDemand.ask ? { ask: config.onDemand.ask } : {}),
    askTimeoutMs: config.onDemand.askTimeout,
    allowTtlMs: config.onDemand.askCacheTtl,
    denyTtlMs: config.onDemand.askDenyCacheTtl,
    logger,
  });
  const cache = new CertificateCache(config.tls.cacheSize, config.tls.contextCacheSize);
  const manager = new CertificateManager({
    storage,
    issuer,
    policy,
    cache,
    logger,
    maxConcurrentIssuances: config.onDemand.maxConcurrentIssuances,
    deniedTtlMs: config.onDemand.askDenyCacheTtl,
    issueLockTtlMs: config.acme.lockTtl,
    issueLockWaitMs: config.acme.timeout * 2,
  });
  await manager.attachBus(bus);
  const fallback = await loadFallbackCertificate(storage, config.tls.fallback);
  const callbacks = createHandshakeCallbacks({
    cache,
    manager,
    tlsAlpn,
    fallback: fallback.context,
    handshakeWaitMs: config.onDemand.handshakeWait,
    logger,
    ...(options.onHandshake ? { onOutcome: options.onHandshake } : {}),
  });

  const proxy = new ReverseProxy({
    ...(config.proxy.upstream ? { defaultUpstream: config.proxy.upstream } : {}),
    routes: config.proxy.routes,
    upstreamTimeoutMs: config.proxy.upstreamTimeout,
    accessLog: config.proxy.accessLog,
    logger,
  });

  const https = createHttpsServer(
    {
      // Served when the client sends no SNI at all.
      cert: fallback.certPem,
      key: fallback.keyPem,
      minVersion: 'TLSv1.2',
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
    redirectToHttps(req.headers.host, req.url ?? '/', httpsPublicPort, res);
  });

  // Session tickets every worker and instance on this storage can decrypt.
  const stopTicketRotation = rotateTicketKeys([https], await loadTicketSecret(storage), config.tls.ticketKeyRotation, logger);

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
  logger.info(
    { step: 'listen', https: `${config.listen.https.host}:${httpsPort}`, http: `${config.listen.http.host}:${httpPort}`, storage: storage.description, ca: issuer.ca },
    'gateway listening',
  );

  return {
    httpsPort,
    httpPort,
    storage,
    cache,
    manager,
    issuer,
    policy,
    proxy,
    events: manager.events,
    logger,
    async close() {
      stopTicketRotation();
      await Promise.all([closeServer(https), closeServer(http)]);
      await proxy.close();
      await manager.close();
      if (!options.storage) await storage.close();
    },
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
