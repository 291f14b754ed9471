// Cache sync between processes (src/tls/cache-sync.ts), on real file storage shared by two
// managers and an in-process bus: a certificate one issues or deletes is replaced or dropped in
// the other's memory cache; a process does not act on its own announcement; after a reconnect,
// what changed while the bus was down is re-checked against storage.
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
import { silentLogger } from '../../src/util/log.ts';
import { OnDemandPolicy } from '../../src/policy/policy.ts';
import { LocalBus } from '../../src/storage/bus.ts';
import { FileStorage } from '../../src/storage/file/store.ts';
import type { Storage } from '../../src/storage/storage.ts';
import { CertificateCache } from '../../src/tls/cache.ts';
import { CACHE_CHANNEL, CacheSync } from '../../src/tls/cache-sync.ts';
import { managerConfig, onDemandSection } from '../support/config.ts';

const issuer = {
  ca: 'test-ca',
  directory: 'https://ca.test/dir',
  async issue(domain: string): Promise<IssuedCertificate> {
    const { certPem, keyPem } = await createSelfSignedCertificate(domain, { days: 30 });
    return { certPem, keyPem, keyType: 'ecdsa-p256', challenge: 'http-01', orderUrl: `https://ca.test/order/${domain}` };
  },
};

/** Yields to the event loop until `done()` (storage reads are real I/O), at most 2,000 times. */
async function until(done: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 2_000 && !done(); i++) await sleep(5);
  assert.ok(done(), `never happened: ${what}`);
}

describe('CacheSync', () => {
  let dir: string;
  let storage: Storage;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'certgate-sync-'));
    storage = await FileStorage.open(dir);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  function processOn(bus?: LocalBus) {
    const cache = new CertificateCache(100);
    const policy = new OnDemandPolicy(onDemandSection({ allow: ['**.ok.test'], askTimeout: 100, askCacheTtl: 1000, askDenyCacheTtl: 1000 }), { logger: silentLogger() });
    const manager = new CertificateManager(managerConfig({ onDemand: { maxConcurrentIssuances: 4 } }), { storage, issuer: issuer as unknown as AcmeIssuer, policy, cache, logger: silentLogger() });
    const sync = new CacheSync({ cache, manager, logger: silentLogger() });
    return { cache, manager, sync, attached: bus ? sync.attach(bus) : Promise.resolve() };
  }

  test('a renewal or delete on one process replaces or drops the certificate in the other\'s cache', async (t) => {
    const bus = new LocalBus();
    const a = processOn(bus);
    const b = processOn(bus);
    await Promise.all([a.attached, b.attached]);
    t.after(() => Promise.all([a.sync.close(), b.sync.close()]));
    const heard: string[] = [];
    t.after(await bus.subscribe(CACHE_CHANNEL, (raw) => heard.push(raw)));

    assert.equal((await a.manager.obtain('renewed.ok.test')).kind, 'ready');
    assert.equal((await a.manager.obtain('deleted.ok.test')).kind, 'ready');
    assert.equal((await b.manager.obtain('renewed.ok.test')).kind, 'ready');
    assert.equal((await b.manager.obtain('deleted.ok.test')).kind, 'ready');
    const old = b.cache.peek('renewed.ok.test')!.fingerprint256;

    const renewed = await a.manager.renew('renewed.ok.test');
    assert.equal(renewed.kind, 'ready');
    const fresh = renewed.kind === 'ready' ? renewed.certificate.fingerprint256 : '';
    assert.notEqual(fresh, old);
    await until(() => b.cache.peek('renewed.ok.test')?.fingerprint256 === fresh, 'the other process loads the renewed certificate');

    await a.manager.delete('deleted.ok.test', 'test');
    await until(() => b.cache.peek('deleted.ok.test') === undefined, 'the other process drops the deleted certificate');
    // The announcing process keeps what it just stored (its own message is dropped, not acted on).
    assert.equal(a.cache.peek('renewed.ok.test')?.fingerprint256, fresh);
    assert.ok(heard.every((raw) => typeof (JSON.parse(raw) as { origin?: unknown }).origin === 'string'), 'messages carry their origin');
    assert.deepEqual(
      heard.map((raw) => JSON.parse(raw) as { domain: string; event: string }).map(({ domain, event }) => `${event} ${domain}`),
      ['updated renewed.ok.test', 'updated deleted.ok.test', 'updated renewed.ok.test', 'deleted deleted.ok.test'],
    );
  });

  test('after a reconnect, cached certificates changed or deleted elsewhere are replaced or dropped', async () => {
    const { manager, cache, sync } = processOn();
    for (const name of ['same1.ok.test', 'changed.ok.test', 'gone.ok.test']) assert.equal((await manager.obtain(name)).kind, 'ready');
    const before = cache.peek('changed.ok.test')!.fingerprint256;
    // Another instance renewed one and deleted another while our bus was down.
    const other = await createSelfSignedCertificate('changed.ok.test', { days: 30 });
    await saveCertificate(storage, { domain: 'changed.ok.test', ca: issuer.ca, directory: issuer.directory, keyType: 'ecdsa-p256', ...other });
    for (const file of ['cert.pem', 'key.pem', 'meta.json']) await storage.delete(`certificates/${issuer.ca}/gone.ok.test/${file}`);

    const result = await sync.revalidate();
    assert.equal(result.replaced, 2);
    assert.notEqual(cache.peek('changed.ok.test')?.fingerprint256, before);
    assert.equal(cache.peek('gone.ok.test'), undefined);
    assert.ok(cache.peek('same1.ok.test'));
  });
});
