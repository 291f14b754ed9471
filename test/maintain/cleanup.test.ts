// Cleanup from the expiry index and the one-time index backfill, on both storage backends (a
// real FileStorage directory and a real redis-server): expired certificates past the grace
// period are deleted, those within it and valid ones are kept, a replaced certificate's old
// entry deletes nothing; stale challenge answers go; and no pass lists every certificate.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { silentLogger } from '../../src/util/log.ts';
import { Cleanup } from '../../src/maintain/cleanup.ts';
import { Maintainer } from '../../src/maintain/maintainer.ts';
import { deleteCertificate, loadCertificate } from '../../src/issuance/store.ts';
import { FileStorage } from '../../src/storage/file/store.ts';
import { keys } from '../../src/storage/keys.ts';
import { RedisStorage } from '../../src/storage/redis/store.ts';
import type { Storage } from '../../src/storage/storage.ts';
import { CountingStorage } from '../support/gateway.ts';
import { startRedis, type RedisHandle } from '../support/redis.ts';
import { tmpDir } from '../support/tmp.ts';
import { seedCertificates } from './seed.ts';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const CA = 'test-ca';
// No CA listens here (loopback, port 1): ARI lookups fail at once, nothing leaves the machine.

/** Records every prefix listed. */
class ListLog extends CountingStorage {
  readonly prefixes: string[] = [];
  override list(prefix: string) {
    this.prefixes.push(prefix);
    return super.list(prefix);
  }
}

let redis: RedisHandle;
before(async () => {
  redis = await startRedis();
});
after(async () => {
  await redis?.dispose();
});

const backends: Array<[string, (t: import('node:test').TestContext) => Promise<Storage>]> = [
  ['file', async (t) => FileStorage.open(await tmpDir(t))],
  ['redis', async (t) => {
    const s = await RedisStorage.connect({ url: redis.url, prefix: `cleanup-${Math.random().toString(16).slice(2)}:`, logger: silentLogger() });
    t.after(() => s.close());
    return s;
  }],
];

for (const [name, open] of backends) {
  describe(`cleanup (${name} storage)`, () => {
    test('expired past grace deleted from the expiry index; within grace, valid and replaced kept; stale challenges removed', async (t) => {
      const storage = new ListLog(await open(t));
      const now = Date.now();
      const seed = (domains: string[], notAfter: number) =>
        seedCertificates({ storage, ca: CA, directory: 'https://127.0.0.1:1/dir', domains, notBefore: new Date(notAfter - 30 * DAY), notAfter: new Date(Math.floor(notAfter / 1000) * 1000) });
      await seed(['old.test'], now - 2 * DAY);
      await seed(['recent.test'], now - HOUR);
      await seed(['valid.test'], now + 30 * DAY);
      // replaced.test: an expired certificate, then a valid one saved over it (the old expiry entry stays behind).
      await seed(['replaced.test'], now - 2 * DAY);
      await seed(['replaced.test'], now + 30 * DAY);
      await storage.put(keys.http01Token('stale-token'), 'x.y');

      const deleted: string[] = [];
      let clock = now;
      const cleanup = new Cleanup({
        storage,
        deleteCertificate: async (domain, reason) => {
          deleted.push(`${domain}: ${reason}`);
          await deleteCertificate(storage, CA, domain);
        },
        expiredGraceMs: DAY,
        staleChallengeAgeMs: HOUR,
        logger: silentLogger(),
        now: () => clock,
      });
      const first = await cleanup.sweep();
      assert.equal(first.certificatesDeleted, 1);
      assert.deepEqual(deleted.map((d) => d.split(':')[0]), ['old.test']);
      assert.equal(await loadCertificate(storage, [CA], 'old.test'), null);
      for (const d of ['recent.test', 'valid.test', 'replaced.test']) assert.ok(await loadCertificate(storage, [CA], d), `${d} kept`);
      assert.equal(first.challengesDeleted, 0, 'a challenge seen once is not stale yet');
      assert.ok(await storage.get(keys.http01Token('stale-token')));

      clock = now + 2 * HOUR;
      const second = await cleanup.sweep();
      assert.equal(second.challengesDeleted, 1);
      assert.equal(await storage.get(keys.http01Token('stale-token')), null);
      assert.equal(second.certificatesDeleted, 0, 'recent.test is still within its grace period');

      clock = now + DAY + HOUR;
      assert.equal((await cleanup.sweep()).certificatesDeleted, 1);
      assert.equal(await loadCertificate(storage, [CA], 'recent.test'), null);
      assert.ok(await loadCertificate(storage, [CA], 'replaced.test'));

      assert.ok(storage.prefixes.every((p) => p.startsWith('index/expiry/') || p === 'challenges/' || (name === 'file' && p === 'locks/')), `listed only index buckets: ${[...new Set(storage.prefixes)].join(', ')}`);
      assert.ok(storage.prefixes.length < 80, `${storage.prefixes.length} lists (hour buckets from the cursor, not every certificate)`);
    });

    test('a dns-01 record left by a dead process is removed through the provider once stale; a failing provider keeps the key for the next sweep', async (t) => {
      const storage = await open(t);
      const key = keys.dns01Record('_acme-challenge.left.test', 'v4lue');
      await storage.put(key, '{}');
      await storage.put(keys.http01Token('tok'), 'x');
      const removed: string[] = [];
      let fail = true;
      const dnsProvider = {
        name: 'recording-test',
        present: () => Promise.resolve(),
        cleanup: (fqdn: string, value: string) => (fail ? Promise.reject(new Error('server down')) : (removed.push(`${fqdn} ${value}`), Promise.resolve())),
      };
      let now = Date.now();
      const cleanup = new Cleanup({ storage, deleteCertificate: async () => undefined, expiredGraceMs: DAY, staleChallengeAgeMs: HOUR, dnsProvider, logger: silentLogger(), now: () => now });
      await cleanup.sweep();
      now += HOUR + 1;
      assert.equal((await cleanup.sweep()).challengesDeleted, 1);
      assert.deepEqual(await storage.list(keys.dns01Prefix), [key]);
      fail = false;
      assert.equal((await cleanup.sweep()).challengesDeleted, 1);
      assert.deepEqual(removed, ['_acme-challenge.left.test v4lue']);
      assert.deepEqual(await storage.list('challenges/'), []);
    });

    if (name === 'file') {
      test('stale lock files (holder died) are removed; held ones are not', async (t) => {
        const storage = await open(t);
        const dead = await storage.tryLock('issue/dead.test', { ttlMs: 50 });
        const live = await storage.tryLock('issue/live.test', { ttlMs: 60_000 });
        assert.ok(dead && live);
        await new Promise((resolve) => setTimeout(resolve, 100));
        const cleanup = new Cleanup({ storage, deleteCertificate: async () => undefined, expiredGraceMs: DAY, staleChallengeAgeMs: HOUR, logger: silentLogger() });
        assert.equal((await cleanup.sweep()).locksRemoved, 1);
        assert.deepEqual(await storage.list('locks/'), ['locks/issue/live.test.lock']);
        await live.release();
      });
    }

    test('backfill: certificates stored before the index are indexed once, guarded by a marker key', async (t) => {
      const storage = new ListLog(await open(t));
      await seedCertificates({ storage, ca: CA, directory: 'https://127.0.0.1:1/dir', domains: ['pre1.test', 'pre2.test'], notBefore: new Date(Date.now() - DAY), notAfter: new Date(Date.now() + 89 * DAY) });
      // Simulate certificates stored by a version without the index: drop their entries.
      for (const k of [...(await storage.list('index/'))]) await storage.delete(k);
      storage.prefixes.length = 0;

      const renewed: string[] = [];
      const make = () =>
        new Maintainer(
          { fraction: 0.33, concurrency: 2, checkInterval: 60_000, jitter: HOUR, leaderLockTtl: 10_000, expiredGrace: 7 * DAY, staleChallengeAge: HOUR },
          {
            storage,
            manager: {
              renew: async (domain) => {
                renewed.push(domain);
                return { kind: 'failed', reason: 'not in this test' };
              },
              delete: async () => undefined,
            },
            policy: { decide: async () => ({ allowed: true, source: 'allow' }) },
            issuers: [],
            logger: silentLogger(),
          },
        );
      const m = make();
      await m.runOnce();
      assert.ok(await storage.get(keys.indexBackfilled), 'marker written');
      assert.equal(storage.prefixes.filter((p) => p === 'certificates/').length, 1, 'one full listing, for the backfill');
      const entries = (await storage.list('index/renewal/')).filter((k) => /\/pre\d\.test$/.test(k));
      assert.equal(entries.length, 2, `both indexed: ${entries.join(', ')}`);
      assert.deepEqual(renewed, [], 'not due: nothing renewed');

      const again = make();
      storage.prefixes.length = 0;
      await again.runOnce();
      await again.runOnce();
      assert.equal(storage.prefixes.filter((p) => p === 'certificates/' || p === '').length, 0, 'no full listing after the marker');
      await m.stop();
      await again.stop();
    });
  });
}
