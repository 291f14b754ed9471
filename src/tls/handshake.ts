// The TLS handshake path, top to bottom.
//
//   ALPNCallback  runs first (pinned by test/tls/handshake.test.ts): if the client offers
//                 `acme-tls/1` this is a CA validating a tls-alpn-01 challenge; mark the socket.
//   SNICallback   then picks the certificate:
//     1. normalise the name; empty/invalid/IP → denied (6), no policy call, no CA call
//     2. marked acme-tls/1 → the challenge certificate: from memory if this process presented
//        it; otherwise only within the abuse limits (per client and global, the buckets of 4;
//        the client is net/client-address.ts's: a trusted balancer's PROXY header, else the peer)
//        is shared storage read, so random names cost a bucket check, not storage reads.
//        Limited or nothing pending → the handshake fails (a sampled log line, no fallback)
//     3. covered by a managed certificate (config `certificates`: the name, or `*.parent` one
//        label above it; O(labels), issuance/managed.ts) → its certificate from memory, or the
//        fallback while it has none: never an order, never a policy call
//     4. memory cache hit → serve it at once (no storage, no network); else the certificate of
//        a wildcard binding one label above (`*.parent`, stored under that key) in memory. Only a
//        wildcard binding's certificate is kept under such a key (managed ones are step 3), and
//        a disabled or removed wildcard binding's is dropped from memory, so it is served as is
//     5. otherwise the CertificateManager loads it from storage or issues it (policy first);
//        the handshake waits at most `handshakeWait`, then gets the fallback while the
//        issuance goes on in the background. A certificate it returns for a name whose domain
//        binding is disabled is dropped from memory and the fallback served instead (so a
//        disabled name costs a storage load per handshake, never a cache hit; re-enabling it
//        serves the stored certificate again, no new order).
//     6. a name that gets no certificate (invalid, or refused: policy, remembered denial, abuse
//        limits) is answered as `tls.denied` says: `fallback` serves the fallback certificate;
//        `alert` (tls/denied-alert.ts) sends a fatal unrecognized_name alert (112) and closes,
//        no certificate and no key exchange, so a flood of random names costs little. A client
//        without SNI never gets here (Node serves the fallback, the server's default certificate);
//        an approved name still waiting (handshakeWait) or whose issuance failed gets the fallback.
//        With `alert`, a ClientHello whose refusal is certain before any of this (an invalid
//        name; a remembered denial; not stored, per the filter and then a storage read, and over
//        the abuse limits) is answered by tls/early-refusal.ts before node:tls builds a
//        TLSSocket: same alert, same `refused` (only under a flood: its step 0).
import type { SecureContext, TLSSocket } from 'node:tls';
import type { TlsAlpn01Solver } from '../acme/solvers.ts';
import type { Logger } from '../util/log.ts';
import type { IssuanceLimits } from '../issuance/limits.ts';
import type { CertificateCache } from './cache.ts';
import type { CertificateManager } from '../issuance/manager.ts';
import type { ManagedCertificates, ManagedSlot } from '../issuance/managed.ts';
import { normalizeServerName } from '../net/names.ts';
import { clientAddress } from '../net/client-address.ts';
import { refuseWithAlert } from './denied-alert.ts';

/** The ALPN protocol a CA offers when it validates a tls-alpn-01 challenge (RFC 8737). */
export const ACME_TLS_ALPN = 'acme-tls/1';
const offersAcmeTls = Symbol('certgate.offersAcmeTls');

type MarkedSocket = TLSSocket & { [offersAcmeTls]?: boolean };
type SniDone = (err: Error | null, ctx?: SecureContext) => void;

/**
 * How an SNI decision ended, for metrics: served from memory, storage, a fresh issuance, the
 * fallback, a challenge certificate, refused with an alert (`tls.denied: alert`), or an
 * unexpected error (fallback served).
 */
export type HandshakeOutcome = 'cache-hit' | 'storage' | 'issued' | 'fallback' | 'challenge' | 'refused' | 'error';

/** `tls.denied`: how a name that gets no certificate is answered (step 6). */
export type DeniedAnswer = 'alert' | 'fallback';

/** What the handshake path works with; see the header for when each is asked. */
export interface HandshakeOptions {
  cache: CertificateCache;
  manager: CertificateManager;
  tlsAlpn: TlsAlpn01Solver | null;
  fallback: SecureContext;
  handshakeWaitMs: number;
  logger: Logger;
  /** The managed certificates (step 3): a name they cover never reaches the manager. */
  managed?: Pick<ManagedCertificates, 'lookup'>;
  /**
   * The abuse limits (onDemand.limits) an acme-tls/1 handshake must pass before its challenge is
   * looked up in storage; the manager applies the same ones to issuance-starting handshakes.
   */
  limits?: Pick<IssuanceLimits, 'admit'>;
  /**
   * Whether a name must not be served although a certificate exists (its domain binding is
   * disabled). Asked only after step 5 found or issued one, so unknown names never pay for it.
   */
  isDisabled?: (domain: string) => Promise<boolean>;
  /** Application protocols we speak, in preference order. */
  protocols?: string[];
  /** Step 6 (`tls.denied`); unset: 'fallback' (the config's default is 'alert'). */
  denied?: DeniedAnswer;
  /** Observes every SNI decision (metrics, tests). */
  onOutcome?: (outcome: HandshakeOutcome, domain: string | undefined) => void;
}

/** The two callbacks to put into the HTTPS server's options (ALPNCallback must run first). */
export interface HandshakeCallbacks {
  ALPNCallback: (this: TLSSocket, arg: { servername: string; protocols: string[] }) => string | undefined;
  SNICallback: (this: TLSSocket, servername: string, cb: SniDone) => void;
}

/**
 * Builds the callbacks of the header. They never throw into the TLS stack and always answer:
 * at worst the fallback after `handshakeWaitMs`.
 */
export function createHandshakeCallbacks(opts: HandshakeOptions): HandshakeCallbacks {
  const { cache, tlsAlpn, fallback, logger } = opts;
  const protocols = opts.protocols ?? ['http/1.1'];
  const outcome = opts.onOutcome ?? (() => {});
  const refuseAlert = opts.denied === 'alert';
  const h: Resolved = { ...opts, outcome, refuseAlert };

  function ALPNCallback(this: TLSSocket, { protocols: offered }: { servername: string; protocols: string[] }): string | undefined {
    if (tlsAlpn && offered.includes(ACME_TLS_ALPN)) {
      (this as MarkedSocket)[offersAcmeTls] = true;
      return ACME_TLS_ALPN;
    }
    // Returning undefined rejects the handshake: the client speaks nothing we do.
    return protocols.find((p) => offered.includes(p));
  }

  function SNICallback(this: TLSSocket, servername: string, cb: SniDone): void {
    const domain = normalizeServerName(servername);
    if (domain === undefined) {
      if (logger.isLevelEnabled('debug')) logger.debug({ sni: servername.slice(0, 300), step: 'sni' }, `invalid server name: ${refuseAlert ? 'unrecognized_name alert' : 'fallback certificate'}`);
      answerDenied(h, this, undefined, cb);
      return;
    }

    if ((this as MarkedSocket)[offersAcmeTls]) {
      const local = tlsAlpn!.localContext(domain);
      if (local) {
        challengeServed(h, domain);
        cb(null, local);
        return;
      }
      const limited = opts.limits?.admit(domain, clientAddress(this));
      if (limited && !limited.ok) {
        // IssuanceLimits logs (sampled) and counts it; a CA's validations (~3 connections per
        // challenge) stay far below the limits, and its challenges are mostly in memory anyway.
        done(cb, new Error(`${domain}: acme-tls/1 handshake refused: ${limited.reason} (step: tls-alpn-01-validation)`));
        return;
      }
      challengeContext(h, domain).then(
        (ctx) => done(cb, null, ctx),
        (err: Error) => done(cb, err),
      );
      return;
    }

    const managed = opts.managed?.lookup(domain);
    if (managed) {
      managedContext(h, managed, domain, cb);
      return;
    }

    const hit = cache.get(domain) ?? wildcardHit(cache, domain);
    if (hit) {
      outcome('cache-hit', domain);
      cb(null, hit.context);
      return;
    }

    certificateFor(h, domain, clientAddress(this)).then(
      (ctx) => (ctx === DENIED ? answerDenied(h, this, domain, cb) : done(cb, null, ctx)),
      (err: Error) => {
        // Unexpected: CertificateManager.obtain never rejects. Serve the fallback, never hang.
        logger.error({ domain, step: 'handshake', err }, 'handshake certificate lookup failed');
        outcome('error', domain);
        done(cb, null, fallback);
      },
    );
  }

  return { ALPNCallback, SNICallback };
}

/** The options with their defaults filled in, as the helpers below use them. */
interface Resolved extends HandshakeOptions {
  outcome: (outcome: HandshakeOutcome, domain: string | undefined) => void;
  /** `denied: 'alert'`. */
  refuseAlert: boolean;
}

/** certificateFor's answer for a refused name: step 6 decides what the client gets. */
const DENIED = Symbol('denied');

/** Step 6: the fallback certificate, or (`alert`) an unrecognized_name alert and the socket closed. */
function answerDenied(h: Resolved, socket: TLSSocket, domain: string | undefined, cb: SniDone): void {
  if (!h.refuseAlert) {
    h.outcome('fallback', domain);
    done(cb, null, h.fallback);
    return;
  }
  h.outcome('refused', domain);
  refuseWithAlert(socket);
}

/** Step 2, from storage: the challenge certificate another process presented, or a failed handshake. */
async function challengeContext(h: Resolved, domain: string): Promise<SecureContext> {
  const ctx = await h.tlsAlpn!.contextFor(domain);
  if (!ctx) {
    h.tlsAlpn!.logUnknown(domain);
    throw new Error(`${domain}: no pending tls-alpn-01 challenge (step: tls-alpn-01-validation)`);
  }
  challengeServed(h, domain);
  return ctx;
}

function challengeServed(h: Resolved, domain: string): void {
  h.logger.info({ domain, step: 'tls-alpn-01-validation' }, 'tls-alpn-01 challenge handshake');
  h.outcome('challenge', domain);
}

/** Step 4, the wildcard binding: the cached certificate of `*.<parent of domain>`, if any. O(1). */
function wildcardHit(cache: CertificateCache, domain: string): ReturnType<CertificateCache['get']> {
  const dot = domain.indexOf('.');
  // A wildcard's base has at least two labels (`*.alice.com`), so `domain` needs three.
  if (dot < 0 || domain.indexOf('.', dot + 1) < 0) return undefined;
  return cache.get(`*.${domain.slice(dot + 1)}`);
}

/** Step 3: the managed certificate covering `domain`, or the fallback while it has none (no order, no policy). */
function managedContext(h: Resolved, slot: ManagedSlot, domain: string, cb: SniDone): void {
  const context = slot.context;
  if (context) {
    h.outcome('cache-hit', domain);
    cb(null, context);
    return;
  }
  h.logger.debug({ domain, step: 'managed', certificate: slot.key }, 'managed certificate not obtained yet: fallback certificate');
  h.outcome('fallback', domain);
  cb(null, h.fallback);
}

/**
 * Step 5: the manager's certificate within `handshakeWaitMs`, else the fallback; DENIED when the
 * name is refused (step 6 answers it). Never rejects but on a bug.
 */
async function certificateFor(h: Resolved, domain: string, clientIp: string | undefined): Promise<SecureContext | typeof DENIED> {
  const { cache, manager, fallback, handshakeWaitMs, logger, outcome } = h;
  let timer: NodeJS.Timeout | undefined;
  const waited = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(resolve, handshakeWaitMs, 'timeout');
  });
  try {
    const result = await Promise.race([manager.obtain(domain, { clientIp }), waited]);
    if (result === 'timeout') {
      logger.warn({ domain, step: 'handshake-wait', waitedMs: handshakeWaitMs }, 'issuance still running: fallback certificate for this handshake');
      outcome('fallback', domain);
      return fallback;
    }
    if (result.kind === 'ready') {
      if (await disabled(h, domain)) {
        // Loaded into memory on the way (or issued before the binding changed): drop it again.
        cache.delete(domain);
        outcome('fallback', domain);
        return fallback;
      }
      outcome(result.source, domain);
      return result.certificate.context;
    }
    if (result.kind === 'denied') return DENIED;
    outcome('fallback', domain);
    return fallback;
  } finally {
    clearTimeout(timer);
  }
}

async function disabled(h: Resolved, domain: string): Promise<boolean> {
  if (!h.isDisabled) return false;
  try {
    return await h.isDisabled(domain);
  } catch (err) {
    // The certificate was just read from the same storage: serve it rather than fail closed
    // on a binding lookup that could not be made.
    h.logger.warn({ domain, step: 'binding-check', err }, 'could not read the domain binding; serving the certificate');
    return false;
  }
}

/** Node's SNI callback must be answered exactly once and never throw back into the TLS stack. */
function done(cb: SniDone, err: Error | null, ctx?: SecureContext): void {
  try {
    cb(err, ctx);
  } catch {
    // The socket went away while we waited; nothing left to answer.
  }
}
