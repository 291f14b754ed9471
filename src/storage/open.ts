// Opens the configured storage. Redis is loaded only when configured; it doubles as the
// cluster bus (pub/sub) for every instance on it.
import type { Config } from '../config/schema.ts';
import type { Logger } from '../util/log.ts';
import type { ClusterBus } from './bus.ts';
import { FileStorage } from './file/store.ts';
import type { Storage } from './storage.ts';

/**
 * Opens the storage the config names: Redis (connected, and also returned as `bus`, the cluster
 * bus of every instance on it) or the file tree (no bus: the caller uses a LocalBus). Fails with
 * a StorageError (step 'config' or 'connect', 'open') rather than starting without storage.
 */
export async function openStorage(config: Config['storage'], logger: Logger): Promise<{ storage: Storage; bus?: ClusterBus }> {
  if (config.redis) {
    const { RedisStorage } = await import('./redis/store.ts');
    const { url, prefix, sentinel, cluster } = config.redis;
    const redis = await RedisStorage.connect({ ...(url ? { url } : {}), prefix, ...(sentinel ? { sentinel } : {}), ...(cluster ? { cluster } : {}), logger });
    return { storage: redis, bus: redis };
  }
  return { storage: await FileStorage.open(config.file.path) };
}
