// Graceful stop of the traffic listeners (SIGTERM/SIGINT, and a worker a rolling restart
// replaces), in one place so that every protocol's listener drains the same way:
//   1. stop accepting: the listening sockets close (with SO_REUSEPORT the kernel sends new
//      connections to the other workers' sockets from then on)
//   2. responses in flight that have not sent their headers, and requests still arriving, say
//      `Connection: close`: a keep-alive client reconnects, to a listener that still accepts
//   3. idle keep-alive connections close once idle for IDLE_GRACE_MS: a request already on its
//      way when the drain began is served (with Connection: close) instead of being lost
//   4. a connection whose last response finished closes (Node ends it: no keep-alive)
//   5. at the deadline (`shutdownTimeout`) whatever is still open is cut
// HTTP/2 connections (the HTTPS listener is an http2 server with allowHTTP1) take steps 2-4 as
// one GOAWAY: session.close() lets the streams in flight finish, refuses new ones and closes the
// connection after the last; their requests are counted in flight, never per socket (an h2
// request's `socket` is a per-stream proxy of the session's).
import type { IncomingMessage, Server as HttpServer, ServerResponse } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { Http2SecureServer, Http2ServerRequest, Http2ServerResponse, ServerHttp2Session } from 'node:http2';
import { Server as NetServer, type Socket } from 'node:net';

/**
 * How long an idle keep-alive connection stays open once the drain began: long enough for a
 * request its client sent just before to arrive (and be answered with Connection: close), short
 * enough that idle connections do not hold up the stop.
 */
export const IDLE_GRACE_MS = 1000;

/** What a drain did: requests still in flight at the deadline were cut off. */
export interface DrainResult {
  /** Requests in flight when the deadline cut their connections (0: all finished in time). */
  cut: number;
}

/** Tracks the connections of the traffic listeners so that drain() can stop them gracefully. */
export class ConnectionDrain {
  #draining = false;
  readonly #servers: Array<HttpServer | HttpsServer | Http2SecureServer> = [];
  readonly #sessions = new Set<ServerHttp2Session>();
  /** Every accepted TCP connection, TLS ones before their handshake too: cut at the deadline. */
  readonly #accepted = new Set<Socket>();
  /** HTTP connections (the TLS socket on HTTPS) → requests in flight on it. */
  readonly #requests = new Map<Socket, number>();
  readonly #inFlight = new Set<ServerResponse | Http2ServerResponse>();
  readonly #idleTimers = new Map<Socket, NodeJS.Timeout>();

  /** Follows `server`'s connections and requests; call before it listens. `secure`: an HTTPS server. */
  track(server: HttpServer | HttpsServer | Http2SecureServer, secure: boolean): void {
    this.#servers.push(server);
    server.on('connection', (socket: Socket) => {
      this.#accepted.add(socket);
      socket.once('close', () => this.#accepted.delete(socket));
      if (!secure) this.#connection(socket);
    });
    if (secure) server.on('secureConnection', (socket: Socket & { alpnProtocol?: string | false }) => socket.alpnProtocol !== 'h2' && this.#connection(socket));
    server.on('session', (session: ServerHttp2Session) => this.#session(session));
    // Before the proxy's listener: it may answer (and send headers) synchronously.
    server.prependListener('request', (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse) =>
      'stream' in res ? this.#h2Request(res) : this.#request(req.socket as Socket, res),
    );
    // An upgraded connection (WebSocket tunnel) is busy until it closes: cut at the deadline.
    server.prependListener('upgrade', (req: IncomingMessage) => this.#requests.set(req.socket, (this.#requests.get(req.socket) ?? 0) + 1));
  }

  /** Steps 1-5 of the header; resolves once every tracked server is closed. Call it once. */
  async drain(timeoutMs: number): Promise<DrainResult> {
    this.#draining = true;
    // net.Server's close, not http's: http's also destroys idle keep-alive connections at once,
    // losing a request already on its way to them (step 3 gives those a grace instead).
    const closed = Promise.all(this.#servers.map((server) => new Promise<void>((resolve) => Reflect.apply(NetServer.prototype.close, server, [() => resolve()]))));
    for (const res of this.#inFlight) if (!res.headersSent && !('stream' in res)) res.shouldKeepAlive = false;
    for (const [socket, requests] of this.#requests) if (requests === 0) this.#closeWhenIdle(socket);
    for (const session of this.#sessions) session.close();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
    const inTime = await Promise.race([closed.then(() => true as const), deadline]);
    clearTimeout(timer);
    let cut = 0;
    if (!inTime) {
      cut = this.#inFlight.size;
      for (const session of this.#sessions) session.destroy();
      for (const socket of [...this.#requests.keys(), ...this.#accepted]) socket.destroy();
      await closed;
    }
    for (const t of this.#idleTimers.values()) clearTimeout(t);
    // The listeners are closed; http's close() now only stops its connection-checking timer.
    for (const server of this.#servers) server.close();
    return { cut };
  }

  #session(session: ServerHttp2Session): void {
    this.#sessions.add(session);
    session.once('close', () => this.#sessions.delete(session));
    if (this.#draining) session.close();
  }

  #h2Request(res: Http2ServerResponse): void {
    this.#inFlight.add(res);
    res.once('close', () => this.#inFlight.delete(res));
  }

  #connection(socket: Socket): void {
    this.#requests.set(socket, 0);
    socket.once('close', () => {
      this.#requests.delete(socket);
      clearTimeout(this.#idleTimers.get(socket));
      this.#idleTimers.delete(socket);
    });
    if (this.#draining) this.#closeWhenIdle(socket);
  }

  #request(socket: Socket, res: ServerResponse): void {
    this.#requests.set(socket, (this.#requests.get(socket) ?? 0) + 1);
    clearTimeout(this.#idleTimers.get(socket));
    this.#idleTimers.delete(socket);
    this.#inFlight.add(res);
    if (this.#draining) res.shouldKeepAlive = false;
    res.once('close', () => {
      this.#inFlight.delete(res);
      const left = (this.#requests.get(socket) ?? 1) - 1;
      if (this.#requests.has(socket)) this.#requests.set(socket, left);
      if (this.#draining && left === 0) this.#closeWhenIdle(socket);
    });
  }

  #closeWhenIdle(socket: Socket): void {
    if (socket.destroyed || this.#idleTimers.has(socket)) return;
    const timer = setTimeout(() => {
      this.#idleTimers.delete(socket);
      if (this.#requests.get(socket) === 0) socket.destroy();
    }, IDLE_GRACE_MS);
    timer.unref();
    this.#idleTimers.set(socket, timer);
  }
}
