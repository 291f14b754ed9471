// Rate-limit budgets on real file storage: two instances on one storage count together, the
// window slides, ARI renewals are exempt, registered domains come from the public suffix list.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { silentLogger } from '../../src/log.ts';
import { isLetsEncrypt, LETS_ENCRYPT_BUDGETS, RateBudgets, type BudgetsConfig } from '../../src/policy/budgets.ts';
import { FileStorage } from '../../src/storage/file.ts';

describe('RateBudgets', () => {
  let dir: string;
  let storage: FileStorage;
  let now = 1_000_000_000_000;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'certgate-budgets-'));
    storage = await FileStorage.open(dir);
  });
  after(async () => {
    await storage.close();
    await rm(dir, { recursive: true, force: true });
  });
  const config: BudgetsConfig = { ...LETS_ENCRYPT_BUDGETS, newOrders: { limit: 3, windowMs: 60_000 } };
  const budgets = () => new RateBudgets(storage, config, silentLogger(), () => now);

  test('new orders: two instances share one budget; the window slides', async () => {
    const a = budgets();
    const b = budgets();
    const results = await Promise.all(['n1', 'n2', 'n3', 'n4', 'n5'].map((n, i) => (i % 2 ? a : b).beginOrder('ca1', `${n}.example.com`)));
    assert.equal(results.filter((r) => r === null).length, 3);
    const refused = results.find((r) => r !== null)!;
    assert.equal(refused.budget, 'newOrders');
    assert.equal(refused.freesAt.getTime(), now + 60_000);
    assert.deepEqual(await a.remaining('newOrders', 'ca1', 'x.example.com'), { remaining: 0, limit: 3, freesAt: new Date(now + 60_000) });
    assert.equal(await a.beginOrder('ca2', 'other-ca.example.com'), null, 'another CA has its own account budget');
    now += 60_001;
    assert.equal(await b.beginOrder('ca1', 'later.example.com'), null);
  });

  test('ARI renewals with replaces are exempt', async () => {
    const b = budgets();
    for (let i = 0; i < 3; i++) await b.beginOrder('ca3', `fill${i}.example.com`);
    assert.equal((await b.beginOrder('ca3', 'renew.example.com'))?.budget, 'newOrders');
    assert.equal(await b.beginOrder('ca3', 'renew.example.com', { exempt: true }), null);
  });

  test('certificates per registered domain use the public suffix list with private suffixes', async () => {
    const b = budgets();
    assert.equal(await b.scopeOf('certificatesPerDomain', 'a.b.shop.example.co.uk'), 'example.co.uk');
    assert.equal(await b.scopeOf('certificatesPerDomain', 'me.github.io'), 'me.github.io');
  });

  test('budgets limited to some CAs leave the others unbudgeted; LE is recognised by its directory', async () => {
    const onlyLe = new RateBudgets(storage, { ...LETS_ENCRYPT_BUDGETS, newOrders: { limit: 1, windowMs: 60_000 } }, silentLogger(), () => now, new Set(['le']));
    assert.equal(await onlyLe.beginOrder('le', 'a.example.com'), null);
    assert.equal((await onlyLe.beginOrder('le', 'b.example.com'))?.budget, 'newOrders');
    for (let i = 0; i < 3; i++) assert.equal(await onlyLe.beginOrder('private-ca', `p${i}.example.com`), null);
    assert.ok(isLetsEncrypt('https://acme-v02.api.letsencrypt.org/directory'));
    assert.ok(isLetsEncrypt('https://acme-staging-v02.api.letsencrypt.org/directory'));
    assert.ok(!isLetsEncrypt('https://acme.zerossl.com/v2/DV90'));
    assert.ok(!isLetsEncrypt('https://api.letsencrypt.org.evil.test/dir'));
  });

  test('duplicates and failed authorizations count per name', async () => {
    const small = new RateBudgets(storage, { ...LETS_ENCRYPT_BUDGETS, duplicates: { limit: 2, windowMs: 60_000 }, failedAuthorizations: { limit: 1, windowMs: 60_000 } }, silentLogger(), () => now);
    await small.recordIssued('ca4', 'dup.example.com');
    await small.recordIssued('ca4', 'dup.example.com');
    assert.equal((await small.beginOrder('ca4', 'dup.example.com'))?.budget, 'duplicates');
    assert.equal(await small.beginOrder('ca4', 'other.example.com'), null);
    await small.recordFailedAuthorization('ca4', 'bad.example.com');
    assert.equal((await small.beginOrder('ca4', 'bad.example.com'))?.budget, 'failedAuthorizations');
  });
});
