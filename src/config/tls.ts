// TLS protocol settings of the HTTPS listener: versions, cipher suites and key-exchange groups.
// The defaults are Mozilla's "intermediate" profile narrowed to ECDHE with AEAD ciphers (no CBC,
// no DHE, no CCM/ARIA), as a modern edge offers them. They are set once on the server: OpenSSL
// keeps the listener's suites and groups when the SNI callback swaps in a certificate's context,
// so per-certificate contexts need none of this.
import { createSecureContext } from 'node:tls';

/** TLS versions an operator may set as the lowest accepted (`tls.minVersion`). */
export const TLS_MIN_VERSIONS = ['TLSv1.2', 'TLSv1.3'] as const;
/** One of TLS_MIN_VERSIONS. */
export type TlsMinVersion = (typeof TLS_MIN_VERSIONS)[number];

/** Application protocols the HTTPS listener can offer by ALPN (`tls.alpn`); `h2` is HTTP/2. */
export const TLS_ALPN_PROTOCOLS = ['h2', 'http/1.1'] as const;

/**
 * Default `tls.ciphers`: the TLS 1.3 suites, then TLS 1.2 ECDHE suites with AES-GCM or
 * ChaCha20-Poly1305, for ECDSA and RSA certificates. OpenSSL cipher-list syntax; TLS 1.3 names
 * (TLS_*) and TLS 1.2 names go in the one string, as node:tls takes them.
 */
export const DEFAULT_TLS_CIPHERS = [
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

/** Default `tls.curves`: the key-exchange groups offered, in preference order (OpenSSL names). */
export const DEFAULT_TLS_CURVES = 'X25519:P-256:P-384';

/** The listener's TLS protocol settings, as node:tls server options take them. */
export interface TlsProtocolSettings {
  minVersion: TlsMinVersion;
  ciphers: string;
  curves: string;
}

/** node:tls server options for these settings (spread into `https.createServer` options). */
export function tlsServerOptions(s: TlsProtocolSettings): { minVersion: TlsMinVersion; ciphers: string; ecdhCurve: string } {
  return { minVersion: s.minVersion, ciphers: s.ciphers, ecdhCurve: s.curves };
}

/**
 * Why OpenSSL would refuse these settings at start-up (an unknown cipher or group name, a list
 * that leaves nothing usable), or undefined when it takes them. Builds one throwaway context.
 */
export function tlsSettingsProblem(s: TlsProtocolSettings): string | undefined {
  try {
    createSecureContext(tlsServerOptions(s));
    return undefined;
  } catch (err) {
    return `OpenSSL refuses tls.ciphers ${JSON.stringify(s.ciphers)} / tls.curves ${JSON.stringify(s.curves)}: ${(err as Error).message}`;
  }
}
