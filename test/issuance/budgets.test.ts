// Rate-limit budgets on real file storage: two instances on one storage count together, the
// window slides, ARI renewals are exempt, registered domains come from the public suffix list.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { silentLogger } from '../../src/util/log.ts';
import type { BudgetsConfig } from '../../src/config/schema.ts';
import { isLetsEncrypt, LETS_ENCRYPT_BUDGETS, RateBudgets, type RateBudgetsDeps } from '../../src/issuance/budgets.ts';
import { acmeSection } from '../support/config.ts';
import { FileStorage } from '../../src/storage/file/store.ts';

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
  const config: BudgetsConfig = { ...LETS_ENCRYPT_BUDGETS, newOrders: { limit: 3, window: 60_000 } };
  /** Budgets on the shared storage and clock; `budgetShare` 1 (no client share) unless given. */
  const rateBudgets = (b: BudgetsConfig, budgetShare = 1, deps: Partial<RateBudgetsDeps> = {}) => new RateBudgets(b, { budgetShare }, { storage, logger: silentLogger(), now: () => now, ...deps });
  const budgets = () => rateBudgets(config);

  test('acme.budgets as parsed is the shape RateBudgets takes; Let\'s Encrypt\'s defaults are the schema\'s', () => {
    assert.deepEqual(acmeSection({ budgets: {} }).budgets, LETS_ENCRYPT_BUDGETS);
    assert.deepEqual(acmeSection({ budgets: { newOrders: { limit: 3, window: '1m' } } }).budgets?.newOrders, config.newOrders);
  });

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
    const onlyLe = rateBudgets({ ...LETS_ENCRYPT_BUDGETS, newOrders: { limit: 1, window: 60_000 } }, 1, { cas: new Set(['le']) });
    assert.equal(await onlyLe.beginOrder('le', 'a.example.com'), null);
    assert.equal((await onlyLe.beginOrder('le', 'b.example.com'))?.budget, 'newOrders');
    for (let i = 0; i < 3; i++) assert.equal(await onlyLe.beginOrder('private-ca', `p${i}.example.com`), null);
    assert.ok(isLetsEncrypt('https://acme-v02.api.letsencrypt.org/directory'));
    assert.ok(isLetsEncrypt('https://acme-staging-v02.api.letsencrypt.org/directory'));
    assert.ok(!isLetsEncrypt('https://acme.zerossl.com/v2/DV90'));
    assert.ok(!isLetsEncrypt('https://api.letsencrypt.org.evil.test/dir'));
  });

  test('duplicates and failed authorizations count per name', async () => {
    const small = rateBudgets({ ...LETS_ENCRYPT_BUDGETS, duplicates: { limit: 2, window: 60_000 }, failedAuthorizations: { limit: 1, window: 60_000 } });
    await small.recordIssued('ca4', 'dup.example.com');
    await small.recordIssued('ca4', 'dup.example.com');
    assert.equal((await small.beginOrder('ca4', 'dup.example.com'))?.budget, 'duplicates');
    assert.equal(await small.beginOrder('ca4', 'other.example.com'), null);
    await small.recordFailedAuthorization('ca4', 'bad.example.com');
    assert.equal((await small.beginOrder('ca4', 'bad.example.com'))?.budget, 'failedAuthorizations');
  });

  test('client share: one address spends at most its share of newOrders, counted by every instance together; another address still orders', async () => {
    const shared: BudgetsConfig = { ...LETS_ENCRYPT_BUDGETS, newOrders: { limit: 8, window: 60_000 } };
    // Two instances on one storage, share 0.25 of 8: two orders per client address per window.
    const a = rateBudgets(shared, 0.25);
    const b = rateBudgets(shared, 0.25);
    assert.equal(await a.beginOrder('ca5', 'x1.share.example', { client: '192.0.2.7' }), null);
    assert.equal(await b.beginOrder('ca5', 'x2.share.example', { client: '192.0.2.7' }), null);
    const refused = await a.beginOrder('ca5', 'x3.share.example', { client: '192.0.2.7' });
    assert.equal(refused?.budget, 'newOrders');
    assert.equal(refused?.client, '192.0.2.7');
    assert.equal(refused?.limit, 2);
    assert.equal(refused?.freesAt.getTime(), now + 60_000);
    // The refused order was not counted against the CA's budget.
    assert.equal((await a.remaining('newOrders', 'ca5', 'any.example')).remaining, 6);
    // Another address (IPv6 too) has its own share; orders without a client (renewals, admin) have none.
    assert.equal(await b.beginOrder('ca5', 'y1.share.example', { client: '2001:db8::1' }), null);
    assert.equal(await b.beginOrder('ca5', 'y2.share.example', { client: '2001:db8::1' }), null);
    assert.equal((await b.beginOrder('ca5', 'y3.share.example', { client: '2001:db8::1' }))?.client, '2001:db8::1');
    assert.equal(await a.beginOrder('ca5', 'renewal.share.example'), null);
    now += 60_001;
    assert.equal(await a.beginOrder('ca5', 'x4.share.example', { client: '192.0.2.7' }), null, 'the share frees with the window');
  });

  test('client share of certificatesPerDomain: one address ordering many names under one registered domain', async () => {
    const shared: BudgetsConfig = { ...LETS_ENCRYPT_BUDGETS, certificatesPerDomain: { limit: 4, window: 60_000 } };
    const budgets = rateBudgets(shared, 0.5);
    assert.equal(await budgets.beginOrder('ca6', 'a.tenant.example.com', { client: '198.51.100.1' }), null);
    assert.equal(await budgets.beginOrder('ca6', 'b.tenant.example.com', { client: '198.51.100.1' }), null);
    const refused = await budgets.beginOrder('ca6', 'c.tenant.example.com', { client: '198.51.100.1' });
    assert.equal(refused?.budget, 'certificatesPerDomain');
    assert.equal(refused?.scope, 'example.com');
    assert.equal(await budgets.beginOrder('ca6', 'a.other.example.net', { client: '198.51.100.1' }), null, 'another registered domain');
    assert.equal(await budgets.beginOrder('ca6', 'c.tenant.example.com', { client: '198.51.100.2' }), null, 'another address');
  });

  test('share 1 (or no client): no per-client counting at all', async () => {
    const whole = rateBudgets({ ...LETS_ENCRYPT_BUDGETS, newOrders: { limit: 3, window: 60_000 } }, 1);
    for (let i = 0; i < 3; i++) assert.equal(await whole.beginOrder('ca7', `w${i}.example.com`, { client: '192.0.2.9' }), null);
    assert.equal((await whole.beginOrder('ca7', 'w3.example.com', { client: '192.0.2.9' }))?.client, undefined);
  });
});
