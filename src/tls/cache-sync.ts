// Keeps every process's memory cache in step with storage: each change the manager makes
// (issued, renewed, deleted) goes out on the cluster bus as a CacheInvalidation (channel
// `cache-invalidation`); every other process drops its copy and loads the new one. The bus is
// at most once, so after a reconnect every cached certificate is compared with storage. Every
// certificate another process stored goes into this process's stored-names filter, which is
// filled again from storage after a reconnect (issuance/stored-names.ts).
import { isUsable } from '../issuance/store.ts';
import type { CertificateManager } from '../issuance/manager.ts';
import type { CacheInvalidation, CertificateMemory } from '../issuance/memory.ts';
import type { StoredNames } from '../issuance/stored-names.ts';
import type { Logger } from '../util/log.ts';
import type { ClusterBus } from '../storage/bus.ts';
import { forEachConcurrently } from '../util/concurrency.ts';
import { channel, withStringField, type Channel } from '../util/channel.ts';

/** The bus channel carrying CacheInvalidation messages between processes. */
export const CACHE_CHANNEL = 'cache-invalidation';

/** What cache sync works with: this process's cache and the manager that fills it. */
export interface CacheSyncOptions {
  cache: CertificateMemory;
  manager: Pick<CertificateManager, 'onCacheInvalidation' | 'forgetDecision' | 'loadStored' | 'readStored'>;
  logger: Logger;
  /** The stored-names filter the manager consults; told of every certificate stored elsewhere. */
  storedNames?: Pick<StoredNames, 'add' | 'refill'>;
}

/** Cache coherence across processes (see the header); attach() once, close() on shutdown. */
export class CacheSync {
  private stops: Array<() => unknown> = [];

  constructor(private readonly opts: CacheSyncOptions) {}

  /** Announces this manager's changes on `bus` and follows everyone else's. */
  async attach(bus: ClusterBus): Promise<void> {
    const { manager, logger } = this.opts;
    const invalidations: Channel<CacheInvalidation> = channel(bus, CACHE_CHANNEL, (value) => withStringField(value, 'domain') as CacheInvalidation | undefined, { dropOwn: true });
    this.stops.push(await invalidations.subscribe((change) => this.onRemote(change)));
    this.stops.push(
      manager.onCacheInvalidation((change) => {
        invalidations.publish(change).catch((err: unknown) => logger.warn({ domain: change.domain, step: 'announce', err }, 'could not announce certificate change'));
      }),
    );
    // Messages published while we were cut off are lost: re-check what we serve.
    const stopReconnect = bus.onReconnect?.(() => {
      void this.revalidate();
      void this.opts.storedNames?.refill();
    });
    if (stopReconnect) this.stops.push(stopReconnect);
  }

  /** Stops announcing and following changes. */
  async close(): Promise<void> {
    const stops = this.stops.reverse();
    this.stops = [];
    for (const stop of stops) await stop();
  }

  /**
   * Compares every cached certificate with storage and replaces (or drops) those changed
   * elsewhere, a few at a time, in the background. Handshakes keep being served meanwhile.
   */
  async revalidate(): Promise<{ checked: number; replaced: number }> {
    const { cache, manager, logger } = this.opts;
    const domains = cache.domains();
    let replaced = 0;
    await forEachConcurrently(domains, 8, async (domain) => {
      try {
        const stored = await manager.readStored(domain);
        const cached = cache.peek(domain);
        if (!cached || stored?.fingerprint256 === cached.fingerprint256) return;
        replaced++;
        if (stored && isUsable(stored)) cache.add(stored);
        else cache.delete(domain);
      } catch (err) {
        logger.warn({ domain, step: 'cache-revalidate', err }, 'could not re-check cached certificate');
      }
    });
    logger.info({ step: 'cache-revalidate', checked: domains.length, replaced }, 'cached certificates re-checked after reconnect');
    return { checked: domains.length, replaced };
  }

  /** Another process changed a certificate: stop serving our copy, and load theirs. */
  private onRemote(change: CacheInvalidation): void {
    const { cache, manager, logger } = this.opts;
    manager.forgetDecision(change.domain);
    if (change.event === 'updated') this.opts.storedNames?.add(change.domain);
    const cached = cache.peek(change.domain);
    if (!cached || (change.event === 'updated' && cached.fingerprint256 === change.fingerprint256)) return;
    cache.delete(change.domain);
    logger.info({ domain: change.domain, step: 'cache-coherence', event: change.event }, 'certificate changed elsewhere; cache entry replaced');
    if (change.event === 'updated') {
      manager.loadStored(change.domain).catch((err: unknown) => logger.warn({ domain: change.domain, step: 'cache-coherence', err }, 'reload after remote change failed'));
    }
  }
}
