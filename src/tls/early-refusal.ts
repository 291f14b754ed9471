// Refusing a flood of names that get no certificate before node:tls builds anything for them
// (`tls.denied: alert` only). Node's per-connection TLS set-up and teardown (TLSSocket, the SSL
// object, the SNI round trip through JS, the error of the reset socket) is most of what a refused
// handshake costs; a real client's handshakes wait behind those in the one event loop.
//   0. only under a flood: peeking costs every connection ~0.1 ms of CPU (a JS read of the
//      first bytes, the parse, unshift; measured ~20% of a warm full handshake), so connections
//      are handed over at once unless at least `refusalsPerSecond` handshakes (default 20) were
//      refused within one second (here, or by the SNI callback: noteRefusal), and for `holdMs`
//      (10 s) after the last such second
//   1. wire(): the HTTPS server's own 'connection' listeners (node:tls's) are taken off and
//      called by ours instead (as net/proxy-protocol-listener.ts does). Listeners added after
//      wire() (the gateway's drain and handshake deadline) see every connection at its accept;
//      the PROXY header reading, wired after it, comes before all of them
//   2. the first bytes are read in paused mode and peeked at (net/client-hello.ts); anything but
//      one whole ClientHello in the first read (more bytes needed, not TLS, no SNI) is put back
//      (unshift) and handed over untouched: node:tls then sees the connection as always
//   3. a ClientHello whose answer is known now and is "refuse": an invalid server name, or a name
//      not in memory, not covered by a managed certificate, that the manager refuses now
//      (CertificateManager.refusalNow: a remembered denial), or refuses unless it is stored
//      (not in the stored-names filter and the client over the abuse limits): then storage is
//      read first (loadIfStored; the connection waits, paused): a certificate a writer this
//      process has not heard of stored is loaded and the connection handed over, to be served.
//      Anything offering acme-tls/1 (a CA validating) or offering only protocols we do not
//      speak (node:tls answers those with its own alert) is handed over; so is a connection
//      whose storage read failed (the SNI callback decides as always).
//   4. refused: the same unrecognized_name alert the SNI callback sends (tls/denied-alert.ts),
//      the socket destroyed, the `refused` outcome reported; no TLSSocket is ever made for it
//   5. a connection that sends nothing within `firstBytesMs` is handed over unread (the
//      gateway's handshake deadline runs from the accept all along); close() destroys those
//      still waiting
import type { Server, Socket } from 'node:net';
import { peekClientHello } from '../net/client-hello.ts';
import { clientAddress } from '../net/client-address.ts';
import { normalizeServerName } from '../net/names.ts';
import type { CertificateManager } from '../issuance/manager.ts';
import type { ManagedCertificates } from '../issuance/managed.ts';
import type { CertificateCache } from './cache.ts';
import { alertRawSocket } from './denied-alert.ts';
import { ACME_TLS_ALPN, type HandshakeOutcome } from './handshake.ts';

/** How long a connection may stay silent before it is handed over to node:tls unread (step 5). */
const FIRST_BYTES_MS = 10_000;
/** Step 0: refused handshakes within one second that start peeking, and how long it lasts. */
const REFUSALS_PER_SECOND = 20;
const HOLD_MS = 10_000;

/** What the early refusal asks (step 3). */
export interface EarlyRefusalOptions {
  cache: Pick<CertificateCache, 'peek'>;
  manager: Pick<CertificateManager, 'refusalNow' | 'loadIfStored'>;
  managed?: Pick<ManagedCertificates, 'lookup'>;
  /** Application protocols we speak (`tls.alpn`). */
  protocols: readonly string[];
  /** Reports each refusal, as the SNI callback reports its own (metrics, tests). */
  onOutcome?: (outcome: HandshakeOutcome, domain: string | undefined) => void;
  /** Step 5; default 10 s. */
  firstBytesMs?: number;
  /** Step 0; default 20. 0: every connection is peeked. */
  refusalsPerSecond?: number;
  /** Step 0; default 10 s. */
  holdMs?: number;
}

type ConnectionListener = (this: Server, socket: Socket) => void;

/** Steps 1-5 of the header for one HTTPS server. */
export class EarlyRefusal {
  readonly #pending = new Set<Socket>();
  #second = 0;
  #refusedThisSecond = 0;
  #peekUntil = 0;

  /** See EarlyRefusalOptions. */
  constructor(private readonly opts: EarlyRefusalOptions) {}

  /** Step 0: one handshake was refused (by the SNI callback, or here). */
  noteRefusal(now = Date.now()): void {
    const second = Math.floor(now / 1000);
    if (second !== this.#second) {
      this.#second = second;
      this.#refusedThisSecond = 0;
    }
    if (++this.#refusedThisSecond >= (this.opts.refusalsPerSecond ?? REFUSALS_PER_SECOND)) this.#peekUntil = now + (this.opts.holdMs ?? HOLD_MS);
  }

  /** Step 0: whether new connections are peeked at now. */
  get peeking(): boolean {
    return this.opts.refusalsPerSecond === 0 || Date.now() < this.#peekUntil;
  }

  /** Step 1: call once, after the server's own listeners are on and before it listens. */
  wire(server: Server): void {
    const own = server.listeners('connection') as ConnectionListener[];
    server.removeAllListeners('connection');
    const handOver = (socket: Socket): void => {
      for (const l of own) l.call(server, socket);
    };
    server.on('connection', (socket: Socket) => (this.peeking ? this.#peek(socket, handOver) : handOver(socket)));
  }

  /** Step 5: destroys connections whose first bytes have not come, or waiting for a storage read. */
  close(): void {
    for (const socket of this.#pending) socket.destroy();
    this.#pending.clear();
  }

  /** Step 4. */
  #refuse(socket: Socket, domain: string | undefined): void {
    // The client may reset while the alert is written: never an unhandled 'error'.
    socket.on('error', ignore);
    this.noteRefusal();
    this.opts.onOutcome?.('refused', domain);
    alertRawSocket(socket);
  }

  /** Step 3's storage read, the connection paused meanwhile: found → handed over, else refused. */
  #refuseUnlessStored(socket: Socket, domain: string, chunk: Buffer, handOver: (socket: Socket) => void): void {
    this.#pending.add(socket);
    socket.on('error', ignore);
    const settle = (found: boolean): void => {
      this.#pending.delete(socket);
      if (socket.destroyed) return;
      if (!found) return this.#refuse(socket, domain);
      socket.off('error', ignore);
      socket.unshift(chunk);
      handOver(socket);
    };
    // A failed read: handed over, the SNI callback decides (and reads again) as always.
    this.opts.manager.loadIfStored(domain).then(settle, () => settle(true));
  }

  /**
   * Step 3: whether a ClientHello naming `serverName` and offering `alpn` from `clientIp` is
   * refused now (`refuse`), refused unless storage holds its certificate (`unless-stored`), or
   * left to the TLS handshake (`hand-over`).
   */
  refuses(serverName: string | undefined, alpn: string[] | undefined, clientIp: string | undefined): { answer: 'refuse' | 'unless-stored' | 'hand-over'; domain: string | undefined } {
    const { cache, manager, managed, protocols } = this.opts;
    // No SNI: Node serves the fallback. acme-tls/1 or no protocol of ours: the handshake decides.
    if (serverName === undefined || (alpn && (alpn.includes(ACME_TLS_ALPN) || !alpn.some((p) => protocols.includes(p))))) return { answer: 'hand-over', domain: undefined };
    const domain = normalizeServerName(serverName);
    if (domain === undefined) return { answer: 'refuse', domain };
    if (managed?.lookup(domain) || cache.peek(domain) || wildcardCached(cache, domain)) return { answer: 'hand-over', domain };
    const refusal = manager.refusalNow(domain, clientIp);
    return { answer: refusal === 'refused' ? 'refuse' : (refusal ?? 'hand-over'), domain };
  }

  /** Steps 2-5 for one connection. */
  #peek(socket: Socket, handOver: (socket: Socket) => void): void {
    const finish = (): void => {
      this.#pending.delete(socket);
      socket.setTimeout(0);
      socket.off('readable', onReadable);
      socket.off('error', finish);
      socket.off('close', finish);
      socket.off('timeout', onTimeout);
    };
    const onTimeout = (): void => {
      finish();
      handOver(socket);
    };
    const onReadable = (): void => {
      const chunk = socket.read() as Buffer | null;
      if (chunk === null) return;
      finish();
      const peeked = peekClientHello(chunk);
      const { answer, domain } = peeked.kind === 'hello' ? this.refuses(peeked.serverName, peeked.alpn, clientAddress(socket)) : { answer: 'hand-over' as const, domain: undefined };
      if (answer === 'refuse') return this.#refuse(socket, domain);
      if (answer === 'unless-stored' && domain !== undefined) return this.#refuseUnlessStored(socket, domain, chunk, handOver);
      socket.unshift(chunk);
      handOver(socket);
    };
    this.#pending.add(socket);
    socket.setTimeout(this.opts.firstBytesMs ?? FIRST_BYTES_MS);
    socket.on('timeout', onTimeout);
    socket.on('readable', onReadable);
    // A reset before the first bytes: node:tls never saw the socket; nothing else to do.
    socket.on('error', finish);
    socket.on('close', finish);
  }
}

function ignore(): void {}

/** The cached certificate of a wildcard binding one label above `domain` (handshake.ts step 4). */
function wildcardCached(cache: Pick<CertificateCache, 'peek'>, domain: string): boolean {
  const dot = domain.indexOf('.');
  if (dot < 0 || domain.indexOf('.', dot + 1) < 0) return false;
  return cache.peek(`*.${domain.slice(dot + 1)}`) !== undefined;
}
