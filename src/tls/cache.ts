// Ready-to-serve certificates, in memory: the only thing a handshake for a known name touches.
// Bounded (LRU), so 100k names on storage cost memory only for the ones in use.
import { createSecureContext, type SecureContext } from 'node:tls';
import type { CertificateBundle } from '../storage/certificates.ts';
import { LruCache } from '../util/lru.ts';

export interface CachedCertificate {
  readonly domain: string;
  readonly context: SecureContext;
  readonly notAfter: number;
  readonly fingerprint256: string;
  readonly ca: string;
}

export class CertificateCache {
  private readonly lru: LruCache<string, CachedCertificate>;

  constructor(maxEntries: number) {
    this.lru = new LruCache(maxEntries);
  }

  get size(): number {
    return this.lru.size;
  }

  /** A cached certificate that is still valid now; expired entries are dropped. */
  get(domain: string, now = Date.now()): CachedCertificate | undefined {
    const entry = this.lru.get(domain);
    if (entry && entry.notAfter <= now) {
      this.lru.delete(domain);
      return undefined;
    }
    return entry;
  }

  add(bundle: CertificateBundle): CachedCertificate {
    const entry: CachedCertificate = {
      domain: bundle.domain,
      context: createSecureContext({ cert: bundle.certPem, key: bundle.keyPem }),
      notAfter: bundle.notAfter.getTime(),
      fingerprint256: bundle.fingerprint256,
      ca: bundle.ca,
    };
    this.lru.set(bundle.domain, entry);
    return entry;
  }

  /** The cached entry, expired or not, without touching recency. */
  peek(domain: string): CachedCertificate | undefined {
    return this.lru.peek(domain);
  }

  /** Cached names, least recently used first. */
  domains(): string[] {
    return [...this.lru.keys()];
  }

  delete(domain: string): void {
    this.lru.delete(domain);
  }
}
