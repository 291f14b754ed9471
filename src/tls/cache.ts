// Ready-to-serve certificates, in memory: the only thing a handshake for a known name touches.
// Two tiers, both LRU-bounded, so 100k names on storage cost memory only for the ones in use:
//   - compact: the leaf and its key as DER in one string + notAfter/fingerprint for up to
//     `maxEntries` names (~1 KiB each with an ECDSA key: DER is 3/4 of PEM's base64);
//   - hot: a live SecureContext (a whole OpenSSL SSL_CTX, ~42 KiB each) for the `maxContexts`
//     most recently served of them.
// A compact-only name builds its SecureContext from memory at its next handshake (no storage,
// no network; 0.2-0.5 ms of CPU, mostly SSL_CTX_new and parsing; turning the DER back into PEM
// is a few µs) and joins the hot tier; whatever falls out of the hot tier keeps its compact
// entry, whatever falls out of the compact tier is gone from both.
// What a live context costs (Node 24, OpenSSL 3.5, measured over 2,000 contexts): ~19 KiB for
// the SSL_CTX itself (whatever the options: ticket keys, session id context or cipher settings
// change < 2 KiB; the default root store is shared, but a context given `ca` builds its own
// store, +13 KiB), ~10 KiB per certificate of the chain (parsed X509s; Node also keeps its own
// copy of the issuer) and ~1.5 KiB for an ECDSA key; nothing a caller can share between contexts.
// A compact entry keeps its own leaf certificate but shares the issuer chain with every other
// certificate from the same intermediate (one string per chain): with Let's Encrypt's chains
// that is more than half of the PEM text.
// A context leaving the hot tier is closed (SSL_CTX freed) after a short grace period rather
// than left to the garbage collector: V8 does not see the native memory, so dead contexts piled
// up (measured: 1,000 live of 10,000 built held 234 MiB of RSS; closed, 45 MiB). Connections
// already using a context hold their own reference and are unaffected.
import { createSecureContext, type SecureContext } from 'node:tls';
import type { CachedCertificate, CertificateMemory } from '../issuance/memory.ts';
import type { CertificateBundle } from '../issuance/store.ts';
import { LruCache } from '../util/lru.ts';

/** Live SecureContexts kept by default, per process: ~42 MiB. */
export const DEFAULT_CONTEXT_CACHE_SIZE = 1000;

/** A retired context is closed 250-500 ms later: long after the handshake that took it used it. */
const CLOSE_GRACE_MS = 250;

type NativeContext = { close?: () => void };

class Entry implements CachedCertificate {
  /** Set only while this entry is in its cache's hot tier. */
  live: SecureContext | undefined;

  constructor(
    private readonly owner: CertificateCache,
    readonly domain: string,
    readonly ca: string,
    readonly notAfter: number,
    readonly fingerprint256: string,
    /** The leaf certificate's DER then the private key's, a byte per char (or both PEM texts). */
    private readonly material: string,
    private readonly leafLength: number,
    /** The rest of the chain (intermediates, PEM), shared between entries. */
    readonly chainPem: string,
    /** The key's PEM label (`PRIVATE KEY`, `EC PRIVATE KEY`, ...); undefined: `material` is PEM. */
    private readonly keyLabel: string | undefined,
  ) {}

  /** The leaf then its chain, PEM: what createSecureContext takes. */
  get certPem(): string {
    const leaf = this.material.slice(0, this.leafLength);
    return (this.keyLabel === undefined ? leaf : pem('CERTIFICATE', leaf)) + this.chainPem;
  }

  get keyPem(): string {
    const key = this.material.slice(this.leafLength);
    return this.keyLabel === undefined ? key : pem(this.keyLabel, key);
  }

  get context(): SecureContext {
    return this.owner.contextOf(this);
  }
}

/**
 * The memory cache of ready-to-serve certificates (see the header): bounded by `maxEntries` names
 * and `maxContexts` live SecureContexts; `get` is the handshake path's (a use), `peek` is not.
 */
export class CertificateCache implements CertificateMemory {
  private readonly compact: LruCache<string, Entry>;
  private readonly hot: LruCache<string, Entry>;
  private retiring: SecureContext[] = [];
  private closing: SecureContext[] = [];
  private closer: NodeJS.Timeout | undefined;
  private readonly chains = new ChainTable();

  constructor(maxEntries: number, maxContexts = Math.min(maxEntries, DEFAULT_CONTEXT_CACHE_SIZE)) {
    this.hot = new LruCache(Math.min(maxContexts, maxEntries), (_domain, entry) => this.retire(entry));
    this.compact = new LruCache(maxEntries, (domain, entry) => {
      this.retire(entry);
      this.hot.delete(domain);
    });
  }

  /** Names cached (either tier). */
  get size(): number {
    return this.compact.size;
  }

  /** Names holding a live SecureContext. */
  get contexts(): number {
    return this.hot.size;
  }

  /** A cached certificate that is still valid now; expired entries are dropped. */
  get(domain: string, now = Date.now()): CachedCertificate | undefined {
    const entry = this.compact.get(domain);
    if (entry && entry.notAfter <= now) {
      this.delete(domain);
      return undefined;
    }
    return entry;
  }

  add(bundle: CertificateBundle): CachedCertificate {
    const { leafPem, chainPem } = this.chains.split(bundle.certPem);
    // Built first: a certificate is added because a handshake is about to serve it, and a bad
    // certificate or key fails here, as before, with OpenSSL's message.
    const live = createSecureContext({ cert: bundle.certPem, key: bundle.keyPem });
    // Decoded in JS: parsing with X509Certificate/createPrivateKey left native garbage behind
    // that V8 does not see, and RSS grew more than the smaller entries saved.
    const leaf = pemBlock(leafPem);
    const key = pemBlock(bundle.keyPem);
    // Kept as one flat one-byte string (a byte per char, 16 bytes of header) rather than a Buffer: a
    // Buffer slice keeps its whole 8 KiB pool alive (measured 3× the bytes), an unpooled one
    // costs an ArrayBuffer and a backing store each (measured: no smaller than the PEM strings).
    // A block that does not round-trip (headers, odd labels) is kept as its PEM text.
    const entry =
      leaf && key && leaf.label === 'CERTIFICATE'
        ? new Entry(this, bundle.domain, bundle.ca, bundle.notAfter.getTime(), bundle.fingerprint256, Buffer.concat([leaf.der, key.der]).toString('latin1'), leaf.der.length, chainPem, key.label)
        : new Entry(this, bundle.domain, bundle.ca, bundle.notAfter.getTime(), bundle.fingerprint256, `${leafPem}${bundle.keyPem}`, leafPem.length, chainPem, undefined);
    entry.live = live;
    const replaced = this.compact.peek(bundle.domain);
    if (replaced) this.retire(replaced);
    this.compact.set(bundle.domain, entry);
    this.hot.set(bundle.domain, entry);
    return entry;
  }

  /** The cached entry, expired or not, without touching recency. */
  peek(domain: string): CachedCertificate | undefined {
    return this.compact.peek(domain);
  }

  /** Cached names, least recently used first. */
  domains(): string[] {
    return [...this.compact.keys()];
  }

  delete(domain: string): void {
    const entry = this.compact.peek(domain);
    if (entry) this.retire(entry);
    this.compact.delete(domain);
    this.hot.delete(domain);
  }

  /** @internal The entry's SecureContext: the live one (touched), else built and promoted. */
  contextOf(entry: Entry): SecureContext {
    if (entry.live) {
      this.hot.get(entry.domain);
      return entry.live;
    }
    const context = createSecureContext({ cert: entry.certPem, key: entry.keyPem });
    // An entry replaced or dropped meanwhile still serves this handshake, but is not kept.
    if (this.compact.peek(entry.domain) === entry) {
      entry.live = context;
      this.hot.set(entry.domain, entry);
    }
    return context;
  }

  /** Takes the entry's live context out of service; closed after the grace period. */
  private retire(entry: Entry): void {
    if (!entry.live) return;
    this.retiring.push(entry.live);
    entry.live = undefined;
    this.closer ??= setInterval(() => this.closeRetired(), CLOSE_GRACE_MS).unref();
  }

  private closeRetired(): void {
    for (const context of this.closing) (context.context as NativeContext).close?.();
    this.closing = this.retiring;
    this.retiring = [];
    if (this.closing.length === 0) {
      clearInterval(this.closer);
      this.closer = undefined;
    }
  }
}

/** A PEM block of `der` (bytes as chars; base64 in 64-character lines, as OpenSSL writes it). */
function pem(label: string, der: string): string {
  return `-----BEGIN ${label}-----\n${Buffer.from(der, 'latin1').toString('base64').match(/.{1,64}/g)!.join('\n')}\n-----END ${label}-----\n`;
}

const PEM_BLOCK = /^\s*-----BEGIN ([A-Z0-9 ]+)-----\r?\n([A-Za-z0-9+/=\r\n]+)-----END \1-----\s*$/;

/**
 * The label and DER of a text that is exactly one plain PEM block; undefined for anything else
 * (PEM headers such as an encrypted key's, several blocks, stray text), which is then kept as it is.
 */
function pemBlock(text: string): { label: string; der: Buffer } | undefined {
  const m = PEM_BLOCK.exec(text);
  if (!m) return undefined;
  const base64 = m[2]!.replace(/[\r\n]/g, '');
  const der = Buffer.from(base64, 'base64');
  // Round trip: only a canonical body is re-encoded, so what OpenSSL reads back is the same.
  return der.toString('base64') === base64 ? { label: m[1]!, der } : undefined;
}

/** Distinct chains kept; past that (not seen with real CAs) a certificate keeps its whole chain. */
const MAX_SHARED_CHAINS = 256;
const END_OF_LEAF = '-----END CERTIFICATE-----';

/** One string per distinct issuer chain, shared by every entry that has it. */
class ChainTable {
  private readonly chains = new Map<string, string>();

  /** The leaf's PEM block (copied, so it does not keep `certPem` alive) and the shared rest. */
  split(certPem: string): { leafPem: string; chainPem: string } {
    // V8 keeps a substring as a slice of its parent string: cut through a Buffer instead.
    const bytes = Buffer.from(certPem, 'utf8');
    const end = bytes.indexOf(END_OF_LEAF);
    if (end < 0) return { leafPem: certPem, chainPem: '' };
    const cut = end + END_OF_LEAF.length;
    const leafPem = bytes.toString('utf8', 0, cut);
    const rest = bytes.toString('utf8', cut);
    let chainPem = this.chains.get(rest);
    if (chainPem === undefined) {
      chainPem = rest;
      if (this.chains.size < MAX_SHARED_CHAINS) this.chains.set(chainPem, chainPem);
    }
    return { leafPem, chainPem };
  }
}
