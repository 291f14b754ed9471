// RenewalScheduler after a failed renewal, on a real FileStorage: the entry is filed at the name's
// shared backoff (CertificateManager.retryAt), so the scheduler and the on-demand path follow one
// schedule; without one (a spent budget, a paused CA) the scheduler's own schedule applies.
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { silentLogger } from '../../src/util/log.ts';
import { renewalKeyOf, type RenewalEntry } from '../../src/issuance/renewal-index.ts';
import { renewalBackoffMs, RenewalScheduler } from '../../src/maintain/scheduler.ts';
import { FileStorage } from '../../src/storage/file/store.ts';
import { getJson } from '../../src/storage/storage.ts';
import type { ObtainOutcome } from '../../src/issuance/manager.ts';
import type { CachedCertificate } from '../../src/issuance/memory.ts';
import { tmpDir } from '../support/tmp.ts';
import { seedCertificates } from './seed.ts';

const DAY = 86_400_000;

/** Seeds a due certificate, lets its renewal fail once; returns the index entry and the clock used. */
async function failOnce(t: TestContext, sharedRetryInMs: number | undefined): Promise<{ entry: RenewalEntry | null; now: number; sharedRetryAt: number | undefined }> {
  const storage = await FileStorage.open(await tmpDir(t, 'certgate-scheduler-'));
  const domain = 'due.scheduler.test';
  // 90 days, 10 left: due (renewal when a third remains).
  await seedCertificates({ storage, ca: 'test-ca', directory: 'https://ca.test/dir', domains: [domain], notBefore: new Date(Date.now() - 80 * DAY), notAfter: new Date(Date.now() + 10 * DAY) });
  // After the save, which files the entry as due at the time it was written.
  const now = Date.now() + 1000;
  const sharedRetryAt = sharedRetryInMs === undefined ? undefined : now + sharedRetryInMs;
  let renewals = 0;
  const scheduler = new RenewalScheduler({
    storage,
    manager: {
      renew: async (): Promise<ObtainOutcome> => {
        renewals++;
        return { kind: 'failed', reason: 'validation failed' };
      },
      delete: async () => {},
      retryAt: async () => sharedRetryAt,
    },
    policy: { decide: async () => ({ allowed: true, source: 'allow' }) },
    fraction: 0.33,
    jitterMs: 0,
    concurrency: 1,
    logger: silentLogger(),
    now: () => now,
  });
  await scheduler.tick();
  await scheduler.idle();
  assert.equal(renewals, 1, 'the due certificate was renewed once');
  const checkAt = sharedRetryAt ?? now + renewalBackoffMs(1);
  return { entry: await getJson<RenewalEntry>(storage, renewalKeyOf({ domain, checkAt })), now, sharedRetryAt };
}

test('a failed renewal is filed at the name’s shared backoff', async (t) => {
  const { entry, sharedRetryAt } = await failOnce(t, 7 * 3_600_000);
  assert.ok(entry, 'entry filed under the hour of the shared retry time');
  assert.equal(entry.checkAt, sharedRetryAt);
  assert.equal(entry.failures, 1);
});

test('without a shared backoff (budget spent, CA paused) the scheduler’s own schedule applies', async (t) => {
  const { entry, now } = await failOnce(t, undefined);
  assert.ok(entry);
  assert.equal(entry.checkAt, now + 60_000);
});

test('a due certificate someone renewed meanwhile: the renewal names the one it found due, and storage’s newer one is not counted as renewed', async (t) => {
  const storage = await FileStorage.open(await tmpDir(t, 'certgate-scheduler-'));
  const domain = 'twice.scheduler.test';
  const seeded = await seedCertificates({ storage, ca: 'test-ca', directory: 'https://ca.test/dir', domains: [domain], notBefore: new Date(Date.now() - 80 * DAY), notAfter: new Date(Date.now() + 10 * DAY) });
  const due = seeded.get(domain)!;
  const now = Date.now() + 1000;
  const asked: Array<string | undefined> = [];
  const scheduler = new RenewalScheduler({
    storage,
    manager: {
      // The manager found another certificate in storage under the lock: no order.
      renew: async (_domain, opts): Promise<ObtainOutcome> => {
        asked.push(opts?.replacing);
        return { kind: 'ready', source: 'storage', certificate: { domain, fingerprint256: 'newer', notAfter: now + 90 * DAY } as CachedCertificate };
      },
      delete: async () => {},
    },
    policy: { decide: async () => ({ allowed: true, source: 'allow' }) },
    fraction: 0.33,
    jitterMs: 0,
    concurrency: 1,
    logger: silentLogger(),
    now: () => now,
  });
  await scheduler.tick();
  await scheduler.idle();
  assert.deepEqual(asked, [due], 'the renewal named the certificate it found due');
  assert.equal(scheduler.stats.renewed, 0);
  assert.equal(scheduler.stats.started, 0);
  assert.deepEqual(await storage.list('index/renewal/'), [], 'the old certificate’s entry is dropped');
});
