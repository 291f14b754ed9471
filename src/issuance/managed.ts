// Managed certificates (`certificates:` in the config): each entry is ONE certificate for all its
// names (one order with several identifiers), needing no policy approval.
//   1. storage: stored like any certificate, under the entry's FIRST name
//      (`certificates/<ca>/<first name>/…`, storage/keys.ts; a wildcard first name keeps its `*.`,
//      which no SNI can spell, so it never meets an on-demand name). Its renewal-index entry is
//      filed under that name too, and the scheduler renews it by that name (isManaged: no policy).
//      A certificate stored under the first name that does not cover every name of the entry (an
//      on-demand one, or the entry gained a name) is not the managed certificate: it is replaced.
//   2. lookup: every name of every entry is one key of a HostPatternMap (the name, or `*.x`: one
//      label below x), so an SNI is matched in O(labels) however many entries there are.
//   3. memory: this class wraps the memory cache. Whenever the manager (or cache sync) adds an
//      entry's certificate, the entry keeps its own SecureContext, pinned: the cache's LRU never
//      evicts it, so a covered handshake never reads storage.
//   4. challenges: `solversFor(names)` picks each order's solvers (dns-01 for wildcards, once a
//      dns-01 solver exists); null means none can validate these names: no order.
import { createSecureContext, type SecureContext } from 'node:tls';
import type { ChallengeSolver } from '../acme/authorize.ts';
import { parseCertificate } from '../acme/x509.ts';
import { HostPatternMap, splitPattern } from '../net/patterns.ts';
import type { CachedCertificate, CertificateMemory } from './memory.ts';
import type { CertificateBundle } from './store.ts';

/** Picks the challenge solvers of an order for `names`, in preference order; null: none can validate them. */
export type SolversFor = (names: readonly string[]) => ChallengeSolver[] | null;

/** What an order for a managed certificate needs: every name (the first is its storage key) and the solvers. */
export interface ManagedOrder {
  names: string[];
  solvers: ChallengeSolver[];
}

/** One managed certificate as the handshake path sees it. */
export interface ManagedSlot {
  /** The entry's first name: its storage key and the name the manager issues and renews it by. */
  readonly key: string;
  readonly names: readonly string[];
  /** The certificate to serve now; undefined while none is held or it has expired. */
  readonly context: SecureContext | undefined;
}

class Slot implements ManagedSlot {
  held: { entry: CachedCertificate; context: SecureContext } | undefined;

  constructor(
    readonly key: string,
    readonly names: readonly string[],
  ) {}

  get context(): SecureContext | undefined {
    const held = this.held;
    return held && held.entry.notAfter > Date.now() ? held.context : undefined;
  }
}

/** Whether the leaf of `certPem` names every one of `names` (a wildcard by its `*.` SAN, not by coverage). */
export function certificateCovers(certPem: string, names: readonly string[]): boolean {
  const sans = new Set(parseCertificate(certPem).names.map((n) => n.toLowerCase()));
  return names.every((n) => sans.has(n));
}

/**
 * The managed certificates of the header, and the memory cache they are served from: pass this
 * wherever the cache is used as CertificateMemory (manager, cache sync), so every certificate
 * added under an entry's first name is pinned here too.
 */
export class ManagedCertificates implements CertificateMemory {
  private readonly byKey = new Map<string, Slot>();
  private readonly covering = new HostPatternMap<Slot>();

  /**
   * `entries`: `certificates` as parsed (names normalised, wildcards as `*.x`, no name in two
   * entries); `inner`: the memory cache; `solversFor`: see the header, step 4.
   */
  constructor(
    entries: ReadonlyArray<{ names: readonly string[] }>,
    private readonly inner: CertificateMemory,
    private readonly solversFor: SolversFor,
  ) {
    for (const { names } of entries) {
      const slot = new Slot(names[0]!, [...names]);
      this.byKey.set(slot.key, slot);
      for (const name of names) {
        const { kind, rest } = splitPattern(name);
        this.covering.add(rest, kind, slot);
      }
    }
  }

  /** The entries' first names (their storage keys), in config order. */
  get keys(): string[] {
    return [...this.byKey.keys()];
  }

  /** Whether `domain` is an entry's first name: its certificate is a managed one (no policy check). */
  isManaged(domain: string): boolean {
    return this.byKey.has(domain);
  }

  /** Every name of the entry whose first name is `key`; undefined when `key` is no entry. */
  namesOf(key: string): readonly string[] | undefined {
    return this.byKey.get(key)?.names;
  }

  /**
   * The first name (storage key) of the entry listing `name` exactly (`*.x` included), else
   * undefined: the admin API shows and renews `wild.test` of `["*.wild.test", "wild.test"]` by it.
   */
  keyOf(name: string): string | undefined {
    for (const slot of this.byKey.values()) if (slot.names.includes(name)) return slot.key;
    return undefined;
  }

  /**
   * The managed certificate covering `name` (normalised): an entry naming it, or naming `*.` its
   * parent. O(labels). The handshake path's step 3.
   */
  lookup(name: string): ManagedSlot | undefined {
    return this.covering.lookup(name);
  }

  /**
   * The order for the entry whose first name is `key`; undefined when `key` is no entry. Throws
   * (naming the entry and the step) when no configured solver can validate its names.
   */
  orderFor(key: string): ManagedOrder | undefined {
    const slot = this.byKey.get(key);
    if (!slot) return undefined;
    const solvers = this.solversFor(slot.names);
    if (!solvers || solvers.length === 0) {
      throw new Error(`managed certificate ${key} [${slot.names.join(', ')}]: no challenge solver can validate these names (wildcards need dns-01: configure acme.dns) (step: challenge-select)`);
    }
    return { names: [...slot.names], solvers };
  }

  /** Adds to the memory cache; an entry's certificate covering all its names is pinned too. */
  add(bundle: CertificateBundle): CachedCertificate {
    const entry = this.inner.add(bundle);
    const slot = this.byKey.get(bundle.domain);
    if (slot && certificateCovers(bundle.certPem, slot.names)) {
      slot.held = { entry, context: createSecureContext({ cert: bundle.certPem, key: bundle.keyPem }) };
    }
    return entry;
  }

  /** The cached entry, or the pinned one when the cache let it go. */
  peek(domain: string): CachedCertificate | undefined {
    return this.inner.peek(domain) ?? this.byKey.get(domain)?.held?.entry;
  }

  /** Drops it from the cache and stops serving it for the names it covers. */
  delete(domain: string): void {
    this.inner.delete(domain);
    const slot = this.byKey.get(domain);
    if (slot) slot.held = undefined;
  }

  /** The cached names and every held managed certificate's key (so cache sync re-checks them too). */
  domains(): string[] {
    const held = [...this.byKey.values()].filter((s) => s.held).map((s) => s.key);
    return [...new Set([...this.inner.domains(), ...held])];
  }
}
