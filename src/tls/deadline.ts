// The handshake deadline (`tls.handshakeTimeout`): a connection that has not completed its TLS
// handshake within the time-out is closed, so sockets that never send a ClientHello, or send
// half of one, or dribble it a byte at a time, cannot hold file descriptors and memory.
//   1. the clock starts when the TCP connection is accepted (the server's 'connection' event),
//      not at the first byte: a socket that sends nothing is closed too
//   2. it is a deadline, not an idle timer (node:tls's own `handshakeTimeout` is reset by every
//      byte read, so a client dribbling its ClientHello would never be closed)
//   3. it is paused while the SNI callback decides, because then the server is the slow one:
//      a first handshake for a new name may wait up to `onDemand.handshakeWait` for issuance,
//      and that wait must not be cut short by a shorter handshake time-out. The time the client
//      had used before is kept; what remains runs again when the callback answers. An answer
//      given before the callback returns (a memory-cache hit: nearly every handshake) pauses
//      nothing: no timer is cleared and set again on the handshake path
//   4. it stops when the handshake completes ('secureConnection') or fails ('tlsClientError')
// node:tls's own idle timer is kept as a backstop, set long enough never to fire first
// (`nodeHandshakeTimeout`). The raw socket of the 'connection' event is what gets destroyed:
// node:tls destroys the TLS socket it wraps when that closes.
import type { Server as NetServer, Socket } from 'node:net';
import type { SecureContext, Server as TlsServer, TLSSocket } from 'node:tls';

type SniCallback = (this: TLSSocket, servername: string, cb: (err: Error | null, ctx?: SecureContext) => void) => void;

/** One connection's deadline: running (timer set) or paused (remaining ms kept). */
interface Deadline {
  timer: NodeJS.Timeout | undefined;
  remainingMs: number;
  startedAt: number;
}

/** What HandshakeDeadlines needs. */
export interface HandshakeDeadlineOptions {
  /** `tls.handshakeTimeout` in ms: the client's own time, SNI decisions excluded. */
  timeoutMs: number;
}

/**
 * Closes connections that have not completed the TLS handshake within `timeoutMs` of being
 * accepted (see the header). Attach it to every TLS server with `watch()`, and wrap the server's
 * SNICallback with `pauseDuring()` so an issuance wait is not counted against the client.
 */
export class HandshakeDeadlines {
  private readonly deadlines = new WeakMap<Socket, Deadline>();

  constructor(private readonly opts: HandshakeDeadlineOptions) {}

  /** Starts a deadline for every connection `server` accepts and ends it when its handshake ends. */
  watch(server: TlsServer | NetServer): void {
    server.on('connection', (socket: Socket) => this.start(socket));
    server.on('secureConnection', (socket: TLSSocket) => this.stop(socket));
    server.on('tlsClientError', (_err: Error, socket: TLSSocket) => this.stop(socket));
  }

  /** `sni` with the deadline of its socket paused until it answers (step 3 of the header). */
  pauseDuring(sni: SniCallback): SniCallback {
    const pause = (raw: Socket | undefined) => this.pause(raw);
    const resume = (raw: Socket | undefined) => this.resume(raw);
    return function (this: TLSSocket, servername, cb) {
      let answered = false;
      let raw: Socket | undefined = undefined;
      sni.call(this, servername, (err, ctx) => {
        if (!answered) {
          answered = true;
          // Paused only if the answer came later (below).
          if (raw) resume(raw);
        }
        cb(err, ctx);
      });
      if (answered) return;
      raw = rawSocket(this);
      pause(raw);
    };
  }

  private start(socket: Socket): void {
    // Already running: a front server (e.g. one reading a PROXY header) accepted it and handed
    // it on; the deadline counts from that accept, once.
    if (this.deadlines.has(socket)) return;
    const deadline: Deadline = { timer: undefined, remainingMs: this.opts.timeoutMs, startedAt: 0 };
    this.deadlines.set(socket, deadline);
    this.run(socket, deadline);
    // A socket closed early (the client gave up) needs no timer kept alive until it would fire.
    socket.once('close', () => this.stop(socket));
  }

  private run(socket: Socket, deadline: Deadline): void {
    deadline.startedAt = Date.now();
    deadline.timer = setTimeout(() => {
      this.deadlines.delete(socket);
      socket.destroy();
    }, Math.max(0, deadline.remainingMs));
    deadline.timer.unref();
  }

  private pause(socket: Socket | undefined): void {
    const deadline = socket && this.deadlines.get(socket);
    if (!deadline?.timer) return;
    clearTimeout(deadline.timer);
    deadline.timer = undefined;
    deadline.remainingMs -= Date.now() - deadline.startedAt;
  }

  private resume(socket: Socket | undefined): void {
    const deadline = socket && this.deadlines.get(socket);
    if (!deadline || deadline.timer || socket.destroyed) return;
    this.run(socket, deadline);
  }

  private stop(socket: Socket): void {
    const raw = rawSocket(socket as TLSSocket) ?? socket;
    const deadline = this.deadlines.get(raw);
    if (!deadline) return;
    clearTimeout(deadline.timer);
    this.deadlines.delete(raw);
  }
}

/**
 * The accepted TCP socket a server-side TLS socket wraps (node:tls keeps it as `_parent`; pinned
 * by test/tls/deadline.test.ts), or undefined for a TLS socket over something else.
 */
function rawSocket(tls: TLSSocket): Socket | undefined {
  const parent = (tls as TLSSocket & { _parent?: unknown })._parent;
  return parent && typeof (parent as Socket).destroy === 'function' ? (parent as Socket) : undefined;
}

/**
 * node:tls's own `handshakeTimeout` (an idle timer from the connection to the end of the
 * handshake, reset by every byte) for a listener with this deadline: the deadline plus the longest
 * SNI wait plus the deadline again, so it can never fire before HandshakeDeadlines does.
 */
export function nodeHandshakeTimeout(timeoutMs: number, handshakeWaitMs: number): number {
  return 2 * timeoutMs + handshakeWaitMs;
}
