// The stored-names filter (src/issuance/stored-names.ts) with the manager, on real file storage:
// once filled, a random name costs no storage read before the gates refuse it (one after); a
// stored name the policy or the abuse limits refuse now is still served from storage; a name another instance stored without telling us is found under
// the lock before any order (no second order); one another process announces on the bus is added.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AcmeIssuer, IssuedCertificate } from '../../src/acme/issuer.ts';
import { createSelfSignedCertificate } from '../../src/acme/x509.ts';
import { CertificateManager } from '../../src/issuance/manager.ts';
import { saveCertificate } from '../../src/issuance/store.ts';
import { StoredNames } from '../../src/issuance/stored-names.ts';
import { IssuanceLimits } from '../../src/issuance/limits.ts';
import { OnDemandPolicy } from '../../src/policy/policy.ts';
import { LocalBus } from '../../src/storage/bus.ts';
import { FileStorage } from '../../src/storage/file/store.ts';
import { keys } from '../../src/storage/keys.ts';
import { CertificateCache } from '../../src/tls/cache.ts';
import { CacheSync } from '../../src/tls/cache-sync.ts';
import { silentLogger } from '../../src/util/log.ts';
import { CountingStorage } from '../support/gateway.ts';
import { managerConfig, onDemandSection } from '../support/config.ts';

class StandInIssuer {
  readonly ca = 'test-ca';
  readonly directory = 'https://ca.test/dir';
  calls: string[] = [];
  async issue(domain: string): Promise<IssuedCertificate> {
    this.calls.push(domain);
    const { certPem, keyPem } = await createSelfSignedCertificate(domain, { days: 30 });
    return { certPem, keyPem, keyType: 'ecdsa-p256', challenge: 'http-01', orderUrl: `https://ca.test/order/${domain}` };
  }
}

/** Yields to the event loop until `done()`, at most 2,000 times. */
async function until(done: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 2_000 && !done(); i++) await sleep(5);
  assert.ok(done(), `never happened: ${what}`);
}

describe('StoredNames with the CertificateManager', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'certgate-stored-names-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  /** One gateway instance: its own FileStorage on the shared directory (counted), filter, manager. */
  async function instance(allow: string[], sub: string, limits?: IssuanceLimits) {
    const storage = new CountingStorage(await FileStorage.open(join(dir, sub)));
    const storedNames = new StoredNames({ storage, logger: silentLogger() });
    const issuer = new StandInIssuer();
    const policy = new OnDemandPolicy(onDemandSection({ allow, askTimeout: 100, askCacheTtl: 1000, askDenyCacheTtl: 1000 }), { logger: silentLogger() });
    const cache = new CertificateCache(100);
    const m = new CertificateManager(managerConfig({ onDemand: { maxConcurrentIssuances: 4 } }), { storage, issuer: issuer as unknown as AcmeIssuer, policy, cache, logger: silentLogger(), storedNames, ...(limits ? { limits } : {}) });
    return { storage, storedNames, issuer, m, cache };
  }

  async function store(storage: FileStorage | CountingStorage, domain: string): Promise<void> {
    const pem = await createSelfSignedCertificate(domain, { days: 30 });
    await saveCertificate(storage, { domain, ca: 'test-ca', directory: 'https://ca.test/dir', keyType: 'ecdsa-p256', ...pem });
  }

  test('filled: a random name is read only after the gates refused it; a stored name the policy refuses, or asked for over the limits, is still served', async () => {
    const limits = new IssuanceLimits(managerConfig({ onDemand: { limits: { perClient: { rate: 0.001, burst: 1 } } } }).onDemand.limits, { logger: silentLogger() });
    const a = await instance(['**.ok.test'], 'one', limits);
    await store(a.storage, 'imported.elsewhere.test'); // e.g. `certgate import`: policy would not approve it now
    assert.equal(a.storedNames.mightBeStored('random1.flood.example'), true, 'before the first fill every name may be stored');
    await a.storedNames.refill();
    assert.equal(a.storedNames.complete, true);

    const ip = '192.0.2.1';
    assert.equal((await a.m.obtain('r0.flood.example', { clientIp: ip })).kind, 'denied', 'the one token: policy denies');
    // Which keys the attempt reads (certificate reads as 'read').
    const realGet = a.storage.get.bind(a.storage);
    const order: string[] = [];
    a.storage.get = async (key: string) => {
      order.push(key.startsWith('certificates/') ? 'read' : key);
      return realGet(key);
    };
    const limited = await a.m.obtain('r1.flood.example', { clientIp: ip });
    assert.equal(limited.kind === 'denied' && (limited as { rateLimited?: true }).rateLimited, true, 'over the limits');
    assert.ok(order.includes('read'), 'read after the refusal: a writer not heard of may have stored it');

    const imported = await a.m.obtain('imported.elsewhere.test', { clientIp: '192.0.2.2' });
    assert.equal(imported.kind === 'ready' && imported.source, 'storage', 'the stored certificate is served although the policy refuses the name');
    a.cache.delete('imported.elsewhere.test');
    const overLimit = await a.m.obtain('imported.elsewhere.test', { clientIp: ip });
    assert.equal(overLimit.kind === 'ready' && overLimit.source, 'storage', 'and to a client over its limits');
    assert.deepEqual(a.issuer.calls, []);
  });

  test('a name stored by a writer not heard of, which the policy refuses: read after the denial and served; its denial not remembered', async () => {
    const a = await instance(['**.ok.test'], 'one-b');
    await a.storedNames.refill();
    await store(a.storage, 'late.elsewhere.test'); // after the listing, announced nowhere
    assert.equal(a.storedNames.mightBeStored('late.elsewhere.test'), false);
    const served = await a.m.obtain('late.elsewhere.test');
    assert.equal(served.kind === 'ready' && served.source, 'storage');
    assert.equal(a.storedNames.mightBeStored('late.elsewhere.test'), true, 'added once found');
    a.cache.delete('late.elsewhere.test');
    const again = await a.m.obtain('late.elsewhere.test');
    assert.equal(again.kind === 'ready' && again.source, 'storage', 'no remembered denial in the way');
    assert.deepEqual(a.issuer.calls, []);
  });

  test('the listing comes from the expiry index once the maintainer backfilled it, else from certificates/', async () => {
    const a = await instance(['**.ok.test'], 'two');
    await store(a.storage, 'indexed.elsewhere.test');
    await a.storedNames.refill();
    assert.equal(a.storedNames.mightBeStored('indexed.elsewhere.test'), true);
    // With the backfill marker, a certificate without an index entry is not listed (the index is the source).
    await a.storage.put(keys.indexBackfilled, '{}');
    await a.storage.put(keys.certificate('test-ca', 'unindexed.elsewhere.test'), 'x');
    await a.storedNames.refill();
    assert.equal(a.storedNames.mightBeStored('indexed.elsewhere.test'), true);
    assert.equal(a.storedNames.mightBeStored('unindexed.elsewhere.test'), false);
  });

  test('a name another instance stored without announcing it is found under the lock: served, not ordered twice', async () => {
    const a = await instance(['**.ok.test'], 'three');
    await a.storedNames.refill();
    // Another instance (its own storage handle on the same directory, no bus between them).
    const b = await instance(['**.ok.test'], 'three');
    const issued = await b.m.obtain('shared.ok.test');
    assert.equal(issued.kind === 'ready' && issued.source, 'issued');
    assert.equal(a.storedNames.mightBeStored('shared.ok.test'), false, 'not heard of: a false negative');

    const ours = await a.m.obtain('shared.ok.test');
    assert.equal(ours.kind === 'ready' && ours.source, 'storage', 'found by the re-read under the name\'s lock');
    assert.equal(ours.kind === 'ready' && issued.kind === 'ready' && ours.certificate.fingerprint256 === issued.certificate.fingerprint256, true);
    assert.deepEqual(a.issuer.calls, [], 'no second order');
    assert.deepEqual(b.issuer.calls, ['shared.ok.test']);
  });

  test('a certificate another process announces on the bus goes into the filter: served although our policy refuses it', async () => {
    const bus = new LocalBus();
    const a = await instance(['**.ok.test'], 'four');
    const b = await instance(['**.b.test'], 'four');
    const syncA = new CacheSync({ cache: a.cache, manager: a.m, logger: silentLogger(), storedNames: a.storedNames });
    const syncB = new CacheSync({ cache: b.cache, manager: b.m, logger: silentLogger(), storedNames: b.storedNames });
    await Promise.all([syncA.attach(bus), syncB.attach(bus), a.storedNames.refill()]);
    try {
      assert.equal((await b.m.obtain('x.b.test')).kind, 'ready');
      await until(() => a.storedNames.mightBeStored('x.b.test'), 'the announcement reaches the other process');
      const served = await a.m.obtain('x.b.test');
      assert.equal(served.kind === 'ready' && served.source, 'storage');
      assert.deepEqual(a.issuer.calls, []);
    } finally {
      await Promise.all([syncA.close(), syncB.close()]);
    }
  });

  test('a certificate this manager stores goes into its filter at once', async () => {
    const a = await instance(['**.ok.test'], 'five');
    await a.storedNames.refill();
    assert.equal((await a.m.obtain('new.ok.test')).kind, 'ready');
    assert.equal(a.storedNames.mightBeStored('new.ok.test'), true);
  });

  test('refusalNow: refused on a remembered denial, unless-stored for a name not in the filter over the limits; loadIfStored finds one a writer not heard of stored', async () => {
    const limits = new IssuanceLimits(managerConfig({ onDemand: { limits: { perClient: { rate: 0.001, burst: 1 } } } }).onDemand.limits, { logger: silentLogger() });
    const a = await instance(['**.ok.test'], 'six', limits);
    await store(a.storage, 'kept.elsewhere.test');
    const ip = '192.0.2.7';
    assert.equal(a.m.refusalNow('r1.flood.example', ip), undefined, 'before the first fill: unsure');
    await a.storedNames.refill();
    assert.equal(a.m.refusalNow('r1.flood.example', ip), undefined, 'within the limits: policy decides');
    assert.equal(a.m.refusalNow('r1.flood.example', ip), undefined, 'asking took no token');
    const first = await a.m.obtain('r1.flood.example', { clientIp: ip });
    assert.equal(first.kind, 'denied');
    assert.ok(!(first as { rateLimited?: true }).rateLimited, 'the one token was still there for the attempt');
    assert.equal(a.m.refusalNow('r1.flood.example', ip), 'refused', 'a remembered denial');
    assert.equal(a.m.refusalNow('r2.flood.example', ip), 'unless-stored', 'not stored, and the client is over its limit');
    assert.equal(a.m.refusalNow('kept.elsewhere.test', ip), undefined, 'stored: served whatever the limits');
    assert.equal(a.m.refusalNow('r2.flood.example', '192.0.2.8'), undefined, 'another client has its own bucket');
    assert.equal(await a.m.loadIfStored('r2.flood.example'), false);
    await store(a.storage, 'late.flood.example'); // after the listing, announced nowhere
    assert.equal(a.m.refusalNow('late.flood.example', ip), 'unless-stored');
    assert.equal(await a.m.loadIfStored('late.flood.example'), true, 'found: loaded into memory');
    assert.ok(a.cache.peek('late.flood.example'));
    assert.equal(a.m.refusalNow('late.flood.example', ip), undefined, 'now in the filter');
  });
});
