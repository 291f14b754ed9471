// The domain registry: which custom domains the platform has bound, and where each one goes.
// One storage key per binding, `registry/domains/<name>` (JSON), so it lives wherever the
// certificates live (file or Redis) and pages in name order with Storage.list's cursor.
//
// Memory: every instance keeps the bindings it has needed lately (a bounded LRU, with "not
// bound" remembered too), not the whole registry, so 100k bindings cost nothing until used. A
// change made on any instance is applied to storage first, then announced on the cluster bus
// (channel `registry-changes`); every other instance replaces its cached entry at once. The bus is
// at-most-once, so cached entries also expire (bound: 5 min, not bound: 30 s) and the whole cache
// is dropped when the bus reconnects.
//
// As a policy source (`onDemand.registry: true`) the registry allows an enabled binding, denies a
// disabled one (it knows the name and says no), and has no opinion on a name it does not hold.
// With ownership verification (`onDemand.ownership`), a binding holds a token and is allowed only
// once its owner's TXT record has been seen (`ownership.verifiedAt`); bindings pending that are
// listed under `registry/ownership-pending/` so the periodic re-check never scans every binding.
// As a route source, an enabled binding's upstream routes that host, and its tenant fills
// `{tenant}` in a configured route's upstream template.
//
// The on/off switch is `enabled`; records stored before it was (`status: active|disabled`) are
// read as `enabled: status !== 'disabled'` and written back in the new shape at their next change.
import type { Logger } from '../util/log.ts';
import { parseUpstream, type UpstreamTarget } from '../net/upstream.ts';
import type { ClusterBus } from '../storage/bus.ts';
import { keys } from '../storage/keys.ts';
import type { Storage } from '../storage/storage.ts';
import { normalizeDomainName, normalizeServerName } from '../net/names.ts';
import { channel, withStringField, type Channel } from '../util/channel.ts';
import { LruCache } from '../util/lru.ts';

/** The bus channel on which instances announce binding changes (RegistryChangeMessage). */
export const REGISTRY_CHANNEL = 'registry-changes';
/** The storage prefix of every binding (`registry/domains/`), for listing. */
export const REGISTRY_PREFIX = keys.registryPrefix;

/**
 * The legacy spelling of the switch (`status: active|disabled`), still accepted in PUT bodies and
 * in stored records: active is `enabled: true`, disabled `enabled: false`.
 */
export const BINDING_STATUSES = ['active', 'disabled'] as const;
/** One of BINDING_STATUSES. */
export type BindingStatus = (typeof BINDING_STATUSES)[number];

/**
 * A binding's ownership proof (`onDemand.ownership`): the token its owner publishes in TXT, and
 * when that record was first seen (absent: not yet, so policy refuses issuance).
 */
export interface BindingOwnership {
  token: string;
  verifiedAt?: string;
}

/** A bound custom domain as stored (JSON) and returned by the admin API. */
export interface DomainBinding {
  /** Normalised (lower-case, punycode) host name. */
  name: string;
  /** 'http(s)://host:port'; absent: the configured routes / default upstream serve the host. */
  upstream?: string;
  tenant?: string;
  label?: string;
  /** The switch: false denies issuance and stops serving the certificate (it stays in storage). */
  enabled: boolean;
  /** Present when the binding was made with `onDemand.ownership` on. */
  ownership?: BindingOwnership;
  createdAt: string;
  updatedAt: string;
}

/** What a binding request sets (validated by the admin API: src/admin/bindings.ts). */
export interface BindingFields {
  upstream?: string | undefined;
  tenant?: string | undefined;
  label?: string | undefined;
  enabled: boolean;
}

/**
 * What onChange listeners hear: a binding made or changed (`created`: new), or removed. `local`:
 * made by this instance (true once in the cluster; webhooks are sent from there).
 */
export type RegistryChange =
  | { type: 'domain-bound'; name: string; binding: DomainBinding; created: boolean; local: boolean }
  | { type: 'domain-unbound'; name: string; local: boolean };

/** The registry as a policy source: it does not know the name, approves it, or denies it. */
export type RegistryDecision = { known: false } | { known: true; allowed: true } | { known: true; allowed: false; reason: string };

/** What goes over REGISTRY_CHANNEL: the name's new binding (null: unbound), already in storage. */
interface RegistryChangeMessage {
  name: string;
  binding: DomainBinding | null;
  created?: boolean;
}

/** Where bindings live and how long each answer (bound, not bound) is kept in memory. */
export interface RegistryOptions {
  storage: Storage;
  logger: Logger;
  /** Bindings (and "not bound" answers) kept in memory; default 100,000. */
  cacheSize?: number;
  boundTtlMs?: number;
  unboundTtlMs?: number;
  /**
   * Makes an ownership token for a binding that has none (`onDemand.ownership` on); absent:
   * bindings get none and need no proof.
   */
  ownershipToken?: () => string;
}

interface CacheEntry {
  binding: DomainBinding | null;
  /** Parsed upstream of an active binding, for the proxy. */
  target: UpstreamTarget | undefined;
}

/**
 * Thrown by bind() and friends for input that is not a valid host name (the admin API answers 400).
 */
export class InvalidDomainError extends Error {
  constructor(readonly input: string) {
    super(`${JSON.stringify(input)} is not a valid domain name (a DNS host name with at least two labels, no IP address, every xn-- label valid punycode that round-trips)`);
    this.name = 'InvalidDomainError';
  }
}

/** The storage key of one binding (`registry/domains/<name>`). */
export const registryKey = keys.registryDomain;

/**
 * The registry of the header. Changes go to storage first, then to every instance (attachBus);
 * reads are answered from memory within the TTLs. close() stops following the bus. Its lookup()
 * is what the proxy's DynamicRoutes asks (matched by shape: policy/ does not import proxy/).
 */
export class DomainRegistry {
  readonly #storage: Storage;
  readonly #logger: Logger;
  readonly #cache: LruCache<string, CacheEntry>;
  readonly #pending = new Map<string, Promise<CacheEntry>>();
  readonly #listeners = new Set<(change: RegistryChange) => void>();
  readonly #boundTtlMs: number;
  readonly #unboundTtlMs: number;
  readonly #ownershipToken: (() => string) | undefined;
  #channel: Channel<RegistryChangeMessage> | undefined;
  #unsubscribe: (() => Promise<void>) | undefined;
  #stopReconnect: (() => void) | undefined;

  constructor(opts: RegistryOptions) {
    this.#storage = opts.storage;
    this.#logger = opts.logger;
    this.#cache = new LruCache(opts.cacheSize ?? 100_000);
    this.#boundTtlMs = opts.boundTtlMs ?? 300_000;
    this.#unboundTtlMs = opts.unboundTtlMs ?? 30_000;
    this.#ownershipToken = opts.ownershipToken;
  }

  /** Hear other instances' changes (and send ours). */
  async attachBus(bus: ClusterBus): Promise<void> {
    this.#channel = channel(bus, REGISTRY_CHANNEL, (value) => withStringField(value, 'name') as RegistryChangeMessage | undefined, { dropOwn: true });
    this.#unsubscribe = await this.#channel.subscribe((message) => this.#onRemote(message));
    this.#stopReconnect = bus.onReconnect?.(() => this.#cache.clear());
  }

  async close(): Promise<void> {
    this.#stopReconnect?.();
    await this.#unsubscribe?.();
  }

  /** Listeners hear every change, local or from another instance. Returns an unsubscribe function. */
  onChange(listener: (change: RegistryChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * The normalised name (a Unicode name becomes its A-labels), or throws InvalidDomainError: also
   * for an `xn--` label that is not valid punycode or does not round-trip (IDNA 2008 / UTS 46).
   */
  static normalize(input: string): string {
    // A wildcard binding (`*.alice.com`) covers one label below its base; the admin API accepts
    // it only with DCV delegation configured (only dns-01 can validate it).
    const wildcard = input.startsWith('*.');
    const name = normalizeDomainName(wildcard ? input.slice(2) : input);
    if (name === undefined) throw new InvalidDomainError(input);
    return wildcard ? `*.${name}` : name;
  }

  /**
   * The active wildcard binding covering `name` (normalised): `*.<parent>` when that is bound and
   * active, else undefined. One registry lookup (memory first): a wildcard covers exactly one
   * label, so `x.y.alice.com` is not covered by `*.alice.com`.
   */
  async wildcardCovering(name: string): Promise<string | undefined> {
    const dot = name.indexOf('.');
    if (dot < 0 || name.startsWith('*.') || name.indexOf('.', dot + 1) < 0) return undefined;
    const wildcard = `*.${name.slice(dot + 1)}`;
    return (await this.get(wildcard))?.enabled ? wildcard : undefined;
  }

  /** The binding for a normalised name (memory first, then storage), or null. */
  async get(name: string): Promise<DomainBinding | null> {
    return (await this.#entry(name)).binding;
  }

  /**
   * Creates or replaces a binding. createdAt and the ownership token (and whether it was seen) are
   * kept on replace; with ownershipToken configured, a binding without a token gets one and is
   * listed as pending ownership.
   */
  async put(input: string, body: BindingFields): Promise<{ binding: DomainBinding; created: boolean }> {
    const name = DomainRegistry.normalize(input);
    const existing = await this.#load(name);
    const now = new Date().toISOString();
    const ownership = existing?.ownership ?? (this.#ownershipToken ? { token: this.#ownershipToken() } : undefined);
    const binding: DomainBinding = {
      name,
      ...(body.upstream !== undefined ? { upstream: parseUpstream(body.upstream).origin } : {}),
      ...(body.tenant !== undefined ? { tenant: body.tenant } : {}),
      ...(body.label !== undefined ? { label: body.label } : {}),
      enabled: body.enabled,
      ...(ownership ? { ownership } : {}),
      createdAt: existing?.createdAt ?? now,
      updatedAt: now,
    };
    // The pending entry first: a binding is never left unverified without one (the re-check finds it).
    if (ownership && !ownership.verifiedAt) await this.#storage.put(keys.ownershipPending(name), now);
    const created = existing === null;
    await this.#store(binding, created);
    this.#logger.info({ domain: name, step: 'registry-bind', upstream: binding.upstream, enabled: binding.enabled, created }, 'domain bound');
    return { binding, created };
  }

  /**
   * Records that the binding's ownership TXT record was seen (now): from then on policy may approve
   * it. Returns the binding as stored, or null when `name` is not bound (or has no token).
   */
  async markOwnershipVerified(name: string): Promise<DomainBinding | null> {
    const existing = await this.#load(name);
    if (!existing?.ownership) return null;
    if (existing.ownership.verifiedAt) return existing;
    const binding: DomainBinding = { ...existing, ownership: { ...existing.ownership, verifiedAt: new Date().toISOString() } };
    await this.#store(binding, false);
    await this.#storage.delete(keys.ownershipPending(name));
    this.#logger.info({ domain: name, step: 'ownership-verified' }, 'domain ownership verified (TXT record seen)');
    return binding;
  }

  /**
   * Up to `limit` names whose ownership is still unverified, in name order after `after` (the
   * periodic re-check pages through them with this).
   */
  async pendingOwnership(opts: { after?: string; limit: number }): Promise<string[]> {
    const found = await this.#storage.list(keys.ownershipPendingPrefix, { ...(opts.after ? { after: keys.ownershipPending(opts.after) } : {}), limit: opts.limit });
    return found.map((key) => key.slice(keys.ownershipPendingPrefix.length));
  }

  async #store(binding: DomainBinding, created: boolean): Promise<void> {
    await this.#storage.put(registryKey(binding.name), JSON.stringify(binding) + '\n');
    this.#apply(binding.name, binding, created, true);
    this.#announce({ name: binding.name, binding, created });
  }

  /** Removes a binding; false when there was none. */
  async remove(input: string): Promise<boolean> {
    const name = DomainRegistry.normalize(input);
    const existing = await this.#load(name);
    await this.#storage.delete(registryKey(name));
    if (existing?.ownership && !existing.ownership.verifiedAt) await this.#storage.delete(keys.ownershipPending(name));
    this.#apply(name, null, false, true);
    this.#announce({ name, binding: null });
    if (existing) this.#logger.info({ domain: name, step: 'registry-unbind' }, 'domain unbound');
    return existing !== null;
  }

  /**
   * One page of bindings in name order; pass nextCursor back as cursor for the next page.
   * `contains`: only names containing it (lower-case); found by listing the keys after the cursor
   * (no value is read until the page is known), so one search costs one key listing.
   */
  async list(opts: { cursor?: string; limit: number; contains?: string }): Promise<{ items: DomainBinding[]; nextCursor: string | null }> {
    const after = opts.cursor ? { after: registryKey(opts.cursor) } : {};
    const keys = opts.contains ? await this.#matchingKeys(opts.contains, after, opts.limit) : await this.#storage.list(REGISTRY_PREFIX, { ...after, limit: opts.limit });
    const values = await Promise.all(keys.map((key) => this.#storage.get(key)));
    const items: DomainBinding[] = [];
    for (const value of values) {
      const binding = value === null ? null : parseBinding(value);
      if (binding) items.push(binding);
    }
    const last = keys[keys.length - 1];
    return { items, nextCursor: keys.length === opts.limit && last !== undefined ? last.slice(REGISTRY_PREFIX.length) : null };
  }

  async #matchingKeys(contains: string, after: { after?: string }, limit: number): Promise<string[]> {
    const all = await this.#storage.list(REGISTRY_PREFIX, after);
    const out: string[] = [];
    for (const key of all) {
      if (key.slice(REGISTRY_PREFIX.length).includes(contains)) out.push(key);
      if (out.length === limit) break;
    }
    return out;
  }

  /**
   * Policy source: an enabled binding allows, unless its ownership token was not seen yet; a
   * disabled one denies; no binding: no opinion.
   */
  async decide(name: string): Promise<RegistryDecision> {
    const binding = await this.get(name);
    if (binding === null) return { known: false };
    if (!binding.enabled) return { known: true, allowed: false, reason: 'domain registry: binding is disabled' };
    if (binding.ownership && !binding.ownership.verifiedAt) return { known: true, allowed: false, reason: 'domain registry: ownership not verified yet (its TXT record has not been seen)' };
    return { known: true, allowed: true };
  }

  /**
   * Route source for the proxy: the upstream of an active binding with one. Answers from memory
   * when it can (synchronously); otherwise a promise (one storage read, shared).
   */
  lookup(host: string): UpstreamTarget | undefined | Promise<UpstreamTarget | undefined> {
    const name = normalizeServerName(host);
    if (name === undefined) return undefined;
    const cached = this.#cache.get(name);
    if (cached) return cached.target;
    return this.#entry(name).then(
      (entry) => entry.target,
      (err: unknown) => {
        this.#logger.warn({ domain: name, step: 'registry-route', err }, 'domain registry unavailable; using configured routes');
        return undefined;
      },
    );
  }

  /**
   * For `{tenant}` upstream templates: the tenant of the host's enabled binding, undefined when it
   * has none (or is not bound, or disabled). From memory when lookup() was just asked for the
   * same host; otherwise a promise (one storage read, shared).
   */
  tenant(host: string): string | undefined | Promise<string | undefined> {
    const name = normalizeServerName(host);
    if (name === undefined) return undefined;
    const tenantOf = (entry: CacheEntry): string | undefined => (entry.binding?.enabled === true ? entry.binding.tenant : undefined);
    const cached = this.#cache.get(name);
    return cached ? tenantOf(cached) : this.#entry(name).then(tenantOf);
  }

  async #entry(name: string): Promise<CacheEntry> {
    const cached = this.#cache.get(name);
    if (cached) return cached;
    let inflight = this.#pending.get(name);
    if (!inflight) {
      inflight = this.#load(name)
        .then((binding) => this.#remember(name, binding))
        .finally(() => this.#pending.delete(name));
      this.#pending.set(name, inflight);
    }
    return inflight;
  }

  async #load(name: string): Promise<DomainBinding | null> {
    const value = await this.#storage.get(registryKey(name));
    if (value === null) return null;
    const binding = parseBinding(value);
    if (!binding) this.#logger.warn({ domain: name, step: 'registry-load' }, 'unreadable domain binding in storage; treated as not bound');
    return binding;
  }

  #remember(name: string, binding: DomainBinding | null): CacheEntry {
    let target: UpstreamTarget | undefined;
    if (binding?.enabled && binding.upstream !== undefined) {
      try {
        target = parseUpstream(binding.upstream);
      } catch (err) {
        this.#logger.warn({ domain: name, step: 'registry-route', err }, 'binding has an invalid upstream; using configured routes');
      }
    }
    const entry = { binding, target };
    this.#cache.set(name, entry, binding ? this.#boundTtlMs : this.#unboundTtlMs);
    return entry;
  }

  #apply(name: string, binding: DomainBinding | null, created: boolean, local: boolean): void {
    this.#remember(name, binding);
    const change: RegistryChange = binding ? { type: 'domain-bound', name, binding, created, local } : { type: 'domain-unbound', name, local };
    for (const listener of this.#listeners) {
      try {
        listener(change);
      } catch (err) {
        this.#logger.warn({ domain: name, step: 'registry-listener', err }, 'registry change listener failed');
      }
    }
  }

  #announce(message: RegistryChangeMessage): void {
    this.#channel?.publish(message).catch((err: unknown) => {
      this.#logger.warn({ domain: message.name, step: 'registry-announce', err }, 'could not announce registry change');
    });
  }

  #onRemote(message: RegistryChangeMessage): void {
    const binding = message.binding === null ? null : parseBinding(Buffer.from(JSON.stringify(message.binding)));
    this.#apply(message.name, binding, message.created === true, false);
  }
}

/** A stored binding, the legacy `status` switch read as `enabled` (see the header); null if unreadable. */
function parseBinding(value: Buffer): DomainBinding | null {
  try {
    const { status, ...v } = JSON.parse(value.toString('utf8')) as Partial<DomainBinding> & { status?: unknown };
    if (typeof v.name !== 'string' || typeof v.createdAt !== 'string') return null;
    if (typeof v.enabled === 'boolean') return v as DomainBinding;
    if (!BINDING_STATUSES.includes(status as BindingStatus)) return null;
    return { ...v, enabled: status === 'active' } as DomainBinding;
  } catch {
    return null;
  }
}
