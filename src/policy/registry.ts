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
// As a policy source (`onDemand.registry: true`) the registry allows an active binding, denies a
// disabled one (it knows the name and says no), and has no opinion on a name it does not hold.
// As a route source, an active binding's upstream routes that host.
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
 * The statuses a binding may have: active (served, approved) or disabled (denied, not served).
 */
export const BINDING_STATUSES = ['active', 'disabled'] as const;
/** One of BINDING_STATUSES. */
export type BindingStatus = (typeof BINDING_STATUSES)[number];

/** A bound custom domain as stored (JSON) and returned by the admin API. */
export interface DomainBinding {
  /** Normalised (lower-case, punycode) host name. */
  name: string;
  /** 'http(s)://host:port'; absent: the configured routes / default upstream serve the host. */
  upstream?: string;
  tenant?: string;
  label?: string;
  status: BindingStatus;
  createdAt: string;
  updatedAt: string;
}

/** What a binding request sets (validated by the admin API: src/admin/bindings.ts). */
export interface BindingFields {
  upstream?: string | undefined;
  tenant?: string | undefined;
  label?: string | undefined;
  status: BindingStatus;
}

/** What onChange listeners hear: a binding made or changed (`created`: new), or removed. */
export type RegistryChange =
  | { type: 'domain-bound'; name: string; binding: DomainBinding; created: boolean }
  | { type: 'domain-unbound'; name: string };

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
  #channel: Channel<RegistryChangeMessage> | undefined;
  #unsubscribe: (() => Promise<void>) | undefined;
  #stopReconnect: (() => void) | undefined;

  constructor(opts: RegistryOptions) {
    this.#storage = opts.storage;
    this.#logger = opts.logger;
    this.#cache = new LruCache(opts.cacheSize ?? 100_000);
    this.#boundTtlMs = opts.boundTtlMs ?? 300_000;
    this.#unboundTtlMs = opts.unboundTtlMs ?? 30_000;
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
    return (await this.get(wildcard))?.status === 'active' ? wildcard : undefined;
  }

  /** The binding for a normalised name (memory first, then storage), or null. */
  async get(name: string): Promise<DomainBinding | null> {
    return (await this.#entry(name)).binding;
  }

  /** Creates or replaces a binding (createdAt is kept on replace). */
  async put(input: string, body: BindingFields): Promise<{ binding: DomainBinding; created: boolean }> {
    const name = DomainRegistry.normalize(input);
    const existing = await this.#load(name);
    const now = new Date().toISOString();
    const binding: DomainBinding = {
      name,
      ...(body.upstream !== undefined ? { upstream: parseUpstream(body.upstream).origin } : {}),
      ...(body.tenant !== undefined ? { tenant: body.tenant } : {}),
      ...(body.label !== undefined ? { label: body.label } : {}),
      status: body.status,
      createdAt: existing?.createdAt ?? now,
      updatedAt: now,
    };
    await this.#storage.put(registryKey(name), JSON.stringify(binding) + '\n');
    const created = existing === null;
    this.#apply(name, binding, created);
    this.#announce({ name, binding, created });
    this.#logger.info({ domain: name, step: 'registry-bind', upstream: binding.upstream, status: binding.status, created }, 'domain bound');
    return { binding, created };
  }

  /** Removes a binding; false when there was none. */
  async remove(input: string): Promise<boolean> {
    const name = DomainRegistry.normalize(input);
    const existing = await this.#load(name);
    await this.#storage.delete(registryKey(name));
    this.#apply(name, null);
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

  /** Policy source: an active binding allows, a disabled one denies, no binding: no opinion. */
  async decide(name: string): Promise<RegistryDecision> {
    const binding = await this.get(name);
    if (binding === null) return { known: false };
    if (binding.status === 'active') return { known: true, allowed: true };
    return { known: true, allowed: false, reason: `domain registry: binding is ${binding.status}` };
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
    if (binding?.status === 'active' && binding.upstream !== undefined) {
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

  #apply(name: string, binding: DomainBinding | null, created = false): void {
    this.#remember(name, binding);
    const change: RegistryChange = binding ? { type: 'domain-bound', name, binding, created } : { type: 'domain-unbound', name };
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
    this.#apply(message.name, binding, message.created === true);
  }
}

function parseBinding(value: Buffer): DomainBinding | null {
  try {
    const v = JSON.parse(value.toString('utf8')) as Partial<DomainBinding>;
    if (typeof v.name !== 'string' || !BINDING_STATUSES.includes(v.status as BindingStatus) || typeof v.createdAt !== 'string') return null;
    return v as DomainBinding;
  } catch {
    return null;
  }
}
