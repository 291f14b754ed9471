// The per-name retry schedule (Let's Encrypt's integration guide) and its shared state in storage.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { backoffDelay, LETS_ENCRYPT_SCHEDULE, RetryState } from '../../src/issuance/backoff.ts';
import { silentLogger } from '../../src/util/log.ts';
import { FileStorage } from '../../src/storage/file/store.ts';
import { acmeSection } from '../support/config.ts';

const MIN = 60_000;
const DAY = 86_400_000;

describe('retry schedule', () => {
  test('1 min, 10 min, 100 min, then daily', () => {
    const delays = [1, 2, 3, 4, 5, 20].map((n) => backoffDelay(LETS_ENCRYPT_SCHEDULE, n));
    assert.deepEqual(delays, [MIN, 10 * MIN, 100 * MIN, DAY, DAY, DAY]);
    assert.equal(LETS_ENCRYPT_SCHEDULE.giveUpAfter, 30 * DAY);
  });

  test('acme.retry as parsed is a schedule: the default is Let\'s Encrypt\'s, a configured one applies as written', () => {
    assert.deepEqual(acmeSection().retry, LETS_ENCRYPT_SCHEDULE);
    const configured = acmeSection({ retry: { delays: ['2m'], then: '1h', giveUpAfter: '2d' } }).retry;
    assert.deepEqual([1, 2, 3].map((n) => backoffDelay(configured, n)), [2 * MIN, 60 * MIN, 60 * MIN]);
  });

  describe('RetryState in storage', () => {
    let dir: string;
    let storage: FileStorage;
    let now = 1_000_000_000_000;
    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'certgate-retry-'));
      storage = await FileStorage.open(dir);
    });
    after(async () => {
      await storage.close();
      await rm(dir, { recursive: true, force: true });
    });
    const state = (issuers = 'ca-a') => new RetryState(storage, LETS_ENCRYPT_SCHEDULE, issuers, silentLogger(), () => now);

    test('failures follow the schedule; two instances on one storage agree', async () => {
      const a = state();
      const b = state();
      const first = await a.recordFailure('x.test', { reason: 'dns', step: 'authorization' });
      assert.equal(first.retryAt, now + MIN);
      now += MIN;
      const second = await b.recordFailure('x.test', { reason: 'connection refused', step: 'directory' });
      assert.equal(second.failures, 2);
      assert.equal(second.retryAt, now + 10 * MIN);
      assert.equal(second.step, 'directory', 'the last failure’s step is kept');
      assert.deepEqual(await a.get('x.test'), second);
    });

    test('Retry-After longer than the backoff wins', async () => {
      const s = await state().recordFailure('ra.test', { reason: 'rate limited', step: 'new-order', retryAfterMs: 3 * 3600_000 });
      assert.equal(s.retryAt, now + 3 * 3600_000);
    });

    test('gives up after 30 days of failures; a config change resets', async () => {
      const s = state();
      await s.recordFailure('dead.test', { reason: 'nxdomain', step: 'authorization' });
      now += 30 * DAY;
      const last = await s.recordFailure('dead.test', { reason: 'nxdomain', step: 'authorization' });
      assert.equal(last.retryAt, null);
      assert.equal(await state('ca-a,ca-b').get('dead.test'), null, 'another issuer list starts afresh');
    });

    test('staging-first CAs are remembered until they recover', async () => {
      const s = state();
      const one = await s.recordFailure('st.test', { reason: 'x', step: 'authorization', failedCas: ['prod'] });
      assert.deepEqual(one.stagingFirst, ['prod']);
      const two = await s.recordFailure('st.test', { reason: 'x', step: 'authorization', recoveredCas: ['prod'] });
      assert.deepEqual(two.stagingFirst, []);
    });

    test('a CA pause is shared and only ever lengthened', async () => {
      const s = state();
      await s.pauseCa('ca-a', now + 10_000, '429');
      await s.pauseCa('ca-a', now + 5_000, '429');
      assert.equal((await state().caPause('ca-a'))?.until, now + 10_000);
      now += 10_001;
      assert.equal(await s.caPause('ca-a'), null);
    });
  });
});
