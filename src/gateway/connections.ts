// Slow and idle clients: what every listener applies, whatever server object it is built on
// (node:https, node:http, an http2 secure server with allowHTTP1).
//   1. the TLS handshake deadline (`tls.handshakeTimeout`, src/tls/deadline.ts): from the TCP
//      accept to the end of the handshake, SNI decisions (issuance waits) not counted; node:tls's
//      own idle timer set as a backstop that never fires first
//   2. HTTP time-outs (`listen.headersTimeout`, `listen.keepAliveTimeout`, `listen.requestTimeout`)
//      set as server properties; node:http checks the first and the last only every
//      `connectionsCheckingInterval` (30 s by default), so that is narrowed to 1 s
//   3. a cap on open connections per listener and process (`listen.maxConnections`, node's
//      server.maxConnections): one listener's flood (port 80 is cheap to hit) cannot use up the
//      other's share. A dropped connection is counted (certgate_connections_dropped_total) and
//      logged at most once per 10 s with the count since the last line; open connections are read
//      at scrape time (certgate_open_connections)
import type { Server as NetServer } from 'node:net';
import type { Server as TlsServer } from 'node:tls';
import type { GatewayMetrics } from '../admin/metrics.ts';
import type { Config } from '../config/schema.ts';
import { HandshakeDeadlines, nodeHandshakeTimeout } from '../tls/deadline.ts';
import type { HandshakeCallbacks } from '../tls/handshake.ts';
import { LogSampler } from '../util/log-sampler.ts';
import type { Logger } from '../util/log.ts';

/** Which listener a server is: the label of its metrics and log lines. */
export type ListenerName = 'https' | 'http';

/** node:http's time-out properties, as an http(s) server (or http2 with allowHTTP1) has them. */
interface HttpTimeouts {
  headersTimeout: number;
  requestTimeout: number;
  keepAliveTimeout: number;
  connectionsCheckingInterval: number;
}

/** How often node:http looks for requests over headersTimeout/requestTimeout (step 2). */
const CHECK_INTERVAL_MS = 1000;
/** At most one "connection limit reached" line per listener per this long (step 3). */
const DROP_LOG_INTERVAL_MS = 10_000;

/** Applies the slow-client settings of the header to the listeners' servers. */
export interface SlowClientGuards {
  /**
   * The TLS server options of step 1: the handshake callbacks with the SNI decision excluded from
   * the deadline, and node:tls's backstop `handshakeTimeout`. Spread into the server's options.
   */
  tlsOptions(callbacks: HandshakeCallbacks): HandshakeCallbacks & { handshakeTimeout: number };
  /**
   * Applies steps 2 and 3 to `server`, and step 1 when it is the HTTPS listener. Call it before
   * `listen()` (node:http starts its time-out checks when the server starts listening).
   */
  guard(server: NetServer | TlsServer, listener: ListenerName): void;
}

/** The guards for `config` (tls.handshakeTimeout, listen.*), counting into `metrics`. */
export function slowClientGuards(config: Config, deps: { metrics: GatewayMetrics; logger: Logger }): SlowClientGuards {
  const deadlines = new HandshakeDeadlines({ timeoutMs: config.tls.handshakeTimeout });
  return {
    tlsOptions: (callbacks) => ({
      ...callbacks,
      SNICallback: deadlines.pauseDuring(callbacks.SNICallback),
      handshakeTimeout: nodeHandshakeTimeout(config.tls.handshakeTimeout, config.onDemand.handshakeWait),
    }),
    guard(server, listener) {
      if (listener === 'https') deadlines.watch(server);
      if ('headersTimeout' in server) Object.assign(server, httpTimeouts(config.listen));
      capConnections(server, listener, config.listen.maxConnections, deps);
    },
  };
}

/** Step 2: the `listen` time-outs as node:http server properties. */
function httpTimeouts(listen: Config['listen']): HttpTimeouts {
  return {
    headersTimeout: listen.headersTimeout,
    requestTimeout: listen.requestTimeout,
    keepAliveTimeout: listen.keepAliveTimeout,
    connectionsCheckingInterval: Math.min(CHECK_INTERVAL_MS, listen.headersTimeout),
  };
}

/** Step 3 for one listener. */
function capConnections(server: NetServer, listener: ListenerName, maxConnections: number, { metrics, logger }: { metrics: GatewayMetrics; logger: Logger }): void {
  server.maxConnections = maxConnections;
  const sampler = new LogSampler({ maxPerInterval: 1, intervalMs: DROP_LOG_INTERVAL_MS });
  server.on('drop', (data?: { remoteAddress?: string }) => {
    metrics.connectionDropped(listener);
    const suppressed = sampler.sample();
    if (suppressed === undefined) return;
    logger.warn(
      { step: 'accept', listener, maxConnections, droppedSinceLastLine: suppressed + 1, remote: data?.remoteAddress },
      `${listener} listener: listen.maxConnections (${maxConnections}) open, new connections closed at once`,
    );
  });
  metrics.countConnections(listener, () => new Promise((resolve) => server.getConnections((err, n) => resolve(err ? 0 : n))));
}
