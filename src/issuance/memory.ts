// What the manager needs of the in-memory certificate cache (tls/cache.ts implements it), named
// here so issuance/ depends on no folder above it: the handshake path (tls/) uses the manager,
// the manager only fills and empties this.
import type { SecureContext } from 'node:tls';
import type { CertificateBundle } from './store.ts';

/** A certificate ready to serve from memory. */
export interface CachedCertificate {
  readonly domain: string;
  /** Built on first use and kept while the name is in the cache's hot tier. */
  readonly context: SecureContext;
  readonly notAfter: number;
  readonly fingerprint256: string;
  readonly ca: string;
}

/** The memory cache as the manager and cache sync use it: by domain, one certificate each. */
export interface CertificateMemory {
  /** Puts (or replaces) the bundle's certificate; returns the entry handshakes will be served. */
  add(bundle: CertificateBundle): CachedCertificate;
  /** The entry for `domain` without counting it as a use; undefined when not cached. */
  peek(domain: string): CachedCertificate | undefined;
  delete(domain: string): void;
  /** Every cached domain, for a re-check against storage. */
  domains(): string[];
}

/**
 * A change to a stored certificate every process's memory cache must follow: `updated` (a new
 * certificate with `fingerprint256` is in storage: load it) or `deleted` (stop serving it).
 * Formerly the `CertificateEvent` of the bus; the lifecycle events are events.ts's.
 */
export interface CacheInvalidation {
  domain: string;
  event: 'updated' | 'deleted';
  fingerprint256?: string;
}
