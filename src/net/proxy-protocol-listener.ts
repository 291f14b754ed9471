// `listen.proxyProtocol`: reads the PROXY header (src/net/proxy-protocol.ts) off connections from
// trusted balancers before the server (TLS or plain HTTP) sees them.
//
//   1. wire(): the server's own 'connection' listeners (node:tls wraps the socket in a TLSSocket
//      there, node:http starts parsing) are taken off and called by ours instead
//   2. a peer outside `trusted` goes to them at once, untouched: it speaks plain TLS/HTTP, so a
//      PROXY header from it fails the TLS handshake or the HTTP parse and the connection closes
//   3. a trusted peer must send a complete header within `timeoutMs` (5 s): no header, a bad one
//      or none in time → the connection is destroyed (a sampled warn line, step "proxy-protocol")
//   4. PROXY → its source address becomes the client address (src/net/client-address.ts);
//      LOCAL (health checks) keeps the peer's. The bytes after the header are put back
//      (unshift) and the server's listeners get the socket as if it had just connected.
//      Reading in paused mode ('readable') matters: node:tls feeds what is buffered into the
//      TLS engine, and node:http resumes the socket and parses it
//   5. close(): connections still owing their header are destroyed, so the server's close
//      does not wait up to `timeoutMs` for them
import type { Server, Socket } from 'node:net';
import type { Logger } from '../util/log.ts';
import { LogSampler } from '../util/log-sampler.ts';
import { CidrSet } from './cidr.ts';
import { setProxiedAddress } from './client-address.ts';
import { parseProxyHeader } from './proxy-protocol.ts';

/** How long a trusted peer has to send its whole PROXY header (the 5 s). */
export const PROXY_HEADER_TIMEOUT_MS = 5000;

/** What the acceptor works with. */
export interface ProxyProtocolOptions {
  /** `listen.proxyProtocol.trusted`: CIDRs of balancers that must send a header. Empty: off. */
  trusted: readonly string[];
  logger: Logger;
  /** Default PROXY_HEADER_TIMEOUT_MS. */
  timeoutMs?: number;
}

type ConnectionListener = (this: Server, socket: Socket) => void;

/** Puts PROXY header reading in front of servers' connections; see the header above. */
export class ProxyProtocolAcceptor {
  readonly #trusted: CidrSet;
  readonly #log: Logger;
  readonly #timeoutMs: number;
  readonly #pending = new Set<Socket>();
  readonly #sampler = new LogSampler({ maxPerInterval: 5, intervalMs: 10_000 });

  /** Throws (naming the key) when a CIDR in `trusted` is malformed; the schema checks them first. */
  constructor(opts: ProxyProtocolOptions) {
    this.#trusted = new CidrSet(opts.trusted, 'listen.proxyProtocol.trusted');
    this.#log = opts.logger;
    this.#timeoutMs = opts.timeoutMs ?? PROXY_HEADER_TIMEOUT_MS;
  }

  /**
   * Step 1, for `server` (named `listener` in logs). Call once, after the server is built and
   * before it listens; with no trusted CIDRs it changes nothing.
   */
  wire(server: Server, listener: string): void {
    if (this.#trusted.size === 0) return;
    const own = server.listeners('connection') as ConnectionListener[];
    server.removeAllListeners('connection');
    const handOver = (socket: Socket): void => {
      for (const l of own) l.call(server, socket);
    };
    server.on('connection', (socket: Socket) => {
      if (!this.#trusted.has(socket.remoteAddress)) handOver(socket);
      else this.#readHeader(socket, listener, handOver);
    });
  }

  /** Step 5. */
  close(): void {
    for (const socket of this.#pending) socket.destroy();
    this.#pending.clear();
  }

  /** Steps 3 and 4. */
  #readHeader(socket: Socket, listener: string, handOver: (socket: Socket) => void): void {
    let buffered: Buffer = Buffer.alloc(0);
    const finish = (): void => {
      clearTimeout(timer);
      this.#pending.delete(socket);
      socket.off('readable', onReadable);
      socket.off('error', onError);
      socket.off('close', finish);
    };
    const refuse = (reason: string): void => {
      finish();
      this.#warn(socket, listener, reason);
      socket.destroy();
    };
    const onReadable = (): void => {
      let chunk: Buffer | null;
      while ((chunk = socket.read() as Buffer | null) !== null) buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      const parsed = parseProxyHeader(buffered);
      if (parsed.status === 'more') return;
      if (parsed.status === 'invalid') return refuse(`connection from a trusted address without a valid PROXY header: ${parsed.reason}`);
      finish();
      if (parsed.header.command === 'proxy') setProxiedAddress(socket, parsed.header.source.address);
      if (buffered.length > parsed.length) socket.unshift(buffered.subarray(parsed.length));
      handOver(socket);
    };
    // A reset while waiting must not become an uncaught 'error'; the server never saw the socket.
    const onError = (): void => finish();
    const timer = setTimeout(() => refuse(`no complete PROXY header within ${this.#timeoutMs} ms`), this.#timeoutMs);
    this.#pending.add(socket);
    socket.on('readable', onReadable);
    socket.on('error', onError);
    socket.on('close', finish);
  }

  #warn(socket: Socket, listener: string, reason: string): void {
    const suppressedSinceLastLine = this.#sampler.sample();
    if (suppressedSinceLastLine === undefined) return;
    this.#log.warn({ step: 'proxy-protocol', listener, remote: socket.remoteAddress, suppressedSinceLastLine }, `${listener} listener: ${reason}; connection closed`);
  }
}

