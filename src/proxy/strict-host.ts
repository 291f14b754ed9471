// `proxy.strictHost`: is a request's Host a name the certificate served on its TLS connection
// covers? A client that reuses a connection for another name (HTTP/1.1 keep-alive, a browser
// coalescing connections, a hand-made request with Host ≠ SNI) gets 421 Misdirected Request
// (RFC 9110 §15.5.20) instead of being routed to that other name's upstream.
//
//   1. plain HTTP (no certificate): not checked
//   2. the certificate is read once per connection (getCertificate(): the one the SNI callback
//      chose) and its names kept with the socket; every further request is two Set probes
//   3. the fallback certificate covers nothing (it was served because the name was not approved)
//   4. covered: a SAN equal to the normalised Host, or `*.suffix` with Host one label below suffix
import { X509Certificate } from 'node:crypto';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { sanNames } from '../acme/x509.ts';

interface CoveredNames {
  exact: Set<string>;
  /** Suffixes of `*.suffix` SANs. */
  wildcard: Set<string>;
}

const NOTHING: CoveredNames = { exact: new Set(), wildcard: new Set() };

/** Answers "does this connection's certificate cover this Host?" for the strictHost option. */
export class StrictHostCheck {
  readonly #fallbackFingerprint: string | undefined;
  readonly #bySocket = new WeakMap<object, CoveredNames>();

  /** `fallbackCert`: PEM of the fallback certificate; a connection it was served on covers no name. */
  constructor(fallbackCert?: string) {
    this.#fallbackFingerprint = fallbackCert === undefined ? undefined : new X509Certificate(fallbackCert).fingerprint256;
  }

  /**
   * True when `host` (already normalised: lower-case, no port, no trailing dot) is covered by the
   * certificate served on `socket`; always true on a connection without TLS.
   */
  covers(socket: Socket, host: string): boolean {
    if ((socket as Partial<TLSSocket>).encrypted !== true) return true;
    let names = this.#bySocket.get(socket);
    if (names === undefined) {
      names = this.#namesOf(socket as TLSSocket);
      this.#bySocket.set(socket, names);
    }
    if (host === '') return false;
    if (names.exact.has(host)) return true;
    const dot = host.indexOf('.');
    return dot > 0 && names.wildcard.has(host.slice(dot + 1));
  }

  #namesOf(socket: TLSSocket): CoveredNames {
    const cert = socket.getCertificate();
    if (cert === null || !('subjectaltname' in cert)) return NOTHING;
    if (this.#fallbackFingerprint !== undefined && cert.fingerprint256 === this.#fallbackFingerprint) return NOTHING;
    const names: CoveredNames = { exact: new Set(), wildcard: new Set() };
    for (const name of sanNames(cert.subjectaltname)) {
      const lower = name.toLowerCase();
      if (lower.startsWith('*.')) names.wildcard.add(lower.slice(2));
      else names.exact.add(lower);
    }
    return names;
  }
}
