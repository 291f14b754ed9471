// Storage.list(prefix, { after, limit }): paging with a cursor, the same on both backends.
// Every key is seen exactly once, in order; a cursor outside the prefix's range is harmless.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { silentLogger } from '../../src/log.ts';
import { FileStorage } from '../../src/storage/file.ts';
import { RedisStorage } from '../../src/storage/redis.ts';
import { StorageError, type Storage } from '../../src/storage/storage.ts';
import { startRedis, type RedisHandle } from '../support/redis.ts';
import { tmpDir } from '../support/tmp.ts';

async function pageThrough(storage: Storage, prefix: string, limit: number): Promise<{ keys: string[]; pages: number }> {
  const keys: string[] = [];
  let cursor: string | undefined;
  let pages = 0;
  for (;;) {
    const page = await storage.list(prefix, { ...(cursor === undefined ? {} : { after: cursor }), limit });
    pages++;
    assert.ok(page.length <= limit, `page of ${page.length} > limit ${limit}`);
    keys.push(...page);
    if (page.length < limit) return { keys, pages };
    cursor = page[page.length - 1];
  }
}

async function checkPaging(storage: Storage): Promise<void> {
  const names = Array.from({ length: 250 }, (_, i) => `registry/domains/d${String(i).padStart(4, '0')}.example`);
  await Promise.all(names.map((k) => storage.put(k, '{}')));
  await storage.put('registry/other', 'x');
  await storage.put('registry/domainsX/y', 'x');
  await storage.put('aaa/before', 'x');

  const all = await storage.list('registry/domains/');
  assert.deepEqual(all, names);
  for (const limit of [1, 7, 100, 250, 1000]) {
    const { keys, pages } = await pageThrough(storage, 'registry/domains/', limit);
    assert.deepEqual(keys, names, `limit ${limit}: every key once, in order`);
    assert.equal(pages, Math.floor(250 / limit) + 1);
  }
  assert.deepEqual(await storage.list('registry/domains/', { limit: 0 }), []);
  assert.deepEqual(await storage.list('registry/domains/', { after: 'a' }), names, 'cursor before the range');
  assert.deepEqual(await storage.list('registry/domains/', { after: 'zzz' }), [], 'cursor after the range');
  assert.deepEqual(await storage.list('registry/domains/', { after: names[248]! }), [names[249]]);
  assert.deepEqual(await storage.list('registry/domains/', { after: 'registry/domains/d0100', limit: 2 }), [names[100], names[101]], 'cursor that is not a key');
  await assert.rejects(storage.list('registry/', { limit: -1 }), StorageError);
  await assert.rejects(storage.list('registry/', { limit: 1.5 }), StorageError);
}

describe('Storage.list paging', () => {
  let redis: RedisHandle;
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    await redis?.dispose();
  });

  test('file storage: after/limit pages through every key once', { timeout: 60_000 }, async (t) => {
    const storage = await FileStorage.open(await tmpDir(t, 'certgate-paging-'));
    await checkPaging(storage);
  });

  test('redis storage: after/limit pages through every key once (ZRANGEBYLEX ... LIMIT)', { timeout: 60_000 }, async () => {
    const storage = await RedisStorage.connect({ url: redis.url, prefix: 'paging:', logger: silentLogger() });
    try {
      await checkPaging(storage);
    } finally {
      await storage.close();
    }
  });
});
