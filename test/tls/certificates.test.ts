// CertificateManager on real file storage and a real policy, with a stand-in issuer (the real
// one is exercised end to end in test/e2e/): one attempt per name however many handshakes ask,
// the global cap on concurrent issuances, backoff after a failure, expired stored certificates
// replaced, denied names answered from memory.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createSelfSignedCertificate } from '../../src/acme/x509.ts';
import type { AcmeIssuer, IssuedCertificate } from '../../src/acme/issuer.ts';
import { silentLogger } from '../../src/log.ts';
import { OnDemandPolicy } from '../../src/policy/policy.ts';
import { saveCertificate } from '../../src/storage/certificates.ts';
import { FileStorage } from '../../src/storage/file.ts';
import { CountingStorage } from '../support/gateway.ts';
import { CertificateCache } from '../../src/tls/cache.ts';
import { CertificateManager } from '../../src/tls/certificates.ts';

class StandInIssuer {
  readonly ca = 'test-ca';
  readonly directory = 'https://ca.test/dir';
  calls: string[] = [];
  active = 0;
  maxActive = 0;
  failFor = new Set<string>();

  async issue(domain: string): Promise<IssuedCertificate> {
    this.calls.push(domain);
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    try {
      await sleep(50);
      if (this.failFor.has(domain)) throw Object.assign(new Error(`${domain}: CA said no`), { step: 'authorization' });
      const { certPem, keyPem } = await createSelfSignedCertificate(domain, { days: 30 });
      return { certPem, keyPem, keyType: 'ecdsa-p256', challenge: 'http-01', orderUrl: `https://ca.test/order/${domain}` };
    } finally {
      this.active--;
    }
  }
}

describe('CertificateManager', () => {
  let dir: string;
  let storage: CountingStorage;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'certgate-mgr-'));
    storage = new CountingStorage(await FileStorage.open(dir));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  function manager(issuer: StandInIssuer, maxConcurrentIssuances = 8) {
    const cache = new CertificateCache(100);
    const policy = new OnDemandPolicy({ allow: ['*.ok.test'], askTimeoutMs: 100, allowTtlMs: 1000, denyTtlMs: 1000, logger: silentLogger() });
    const m = new CertificateManager({ storage, issuer: issuer as unknown as AcmeIssuer, policy, cache, logger: silentLogger(), maxConcurrentIssuances });
    return { m, cache };
  }

  test('concurrent requests for one name share one issuance', async () => {
    const issuer = new StandInIssuer();
    const { m, cache } = manager(issuer);
    const outcomes = await Promise.all(Array.from({ length: 20 }, () => m.obtain('same.ok.test')));
    assert.deepEqual(issuer.calls, ['same.ok.test']);
    assert.ok(outcomes.every((o) => o.kind === 'ready'));
    assert.ok(cache.get('same.ok.test'));
  });

  test('no more than maxConcurrentIssuances orders at once', async () => {
    const issuer = new StandInIssuer();
    const { m } = manager(issuer, 2);
    const names = Array.from({ length: 7 }, (_, i) => `cap${i}.ok.test`);
    const outcomes = await Promise.all(names.map((n) => m.obtain(n)));
    assert.ok(outcomes.every((o) => o.kind === 'ready'));
    assert.equal(issuer.calls.length, 7);
    assert.equal(issuer.maxActive, 2);
  });

  test('a failed issuance backs off instead of ordering again at once', async () => {
    const issuer = new StandInIssuer();
    issuer.failFor.add('broken.ok.test');
    const { m } = manager(issuer);
    const first = await m.obtain('broken.ok.test');
    assert.equal(first.kind, 'failed');
    assert.match((first as { reason: string }).reason, /CA said no/);
    const second = await m.obtain('broken.ok.test');
    assert.equal(second.kind, 'failed');
    assert.match((second as { reason: string }).reason, /in backoff/);
    assert.deepEqual(issuer.calls, ['broken.ok.test'], 'one order only');
  });

  test('an expired stored certificate is replaced, a valid one is loaded', async () => {
    const issuer = new StandInIssuer();
    const { m } = manager(issuer);
    const expired = await createSelfSignedCertificate('old.ok.test', { days: -0.01 });
    await saveCertificate(storage, { domain: 'old.ok.test', ca: issuer.ca, directory: issuer.directory, keyType: 'ecdsa-p256', ...expired });
    const valid = await createSelfSignedCertificate('kept.ok.test', { days: 30 });
    await saveCertificate(storage, { domain: 'kept.ok.test', ca: issuer.ca, directory: issuer.directory, keyType: 'ecdsa-p256', ...valid });

    const old = await m.obtain('old.ok.test');
    assert.equal(old.kind === 'ready' && old.source, 'issued');
    const kept = await m.obtain('kept.ok.test');
    assert.equal(kept.kind === 'ready' && kept.source, 'storage');
    assert.deepEqual(issuer.calls, ['old.ok.test']);
  });

  test('a denied name is answered from memory on the next attempts', async () => {
    const issuer = new StandInIssuer();
    const { m } = manager(issuer);
    assert.equal((await m.obtain('stranger.example.com')).kind, 'denied');
    const reads = storage.counts.get;
    for (let i = 0; i < 5; i++) assert.equal((await m.obtain('stranger.example.com')).kind, 'denied');
    assert.equal(storage.counts.get, reads, 'no storage reads for a remembered denial');
    assert.deepEqual(issuer.calls, []);
  });

  test('after a reconnect, cached certificates changed or deleted elsewhere are replaced or dropped', async () => {
    const issuer = new StandInIssuer();
    const { m, cache } = manager(issuer);
    for (const name of ['same1.ok.test', 'changed.ok.test', 'gone.ok.test']) assert.equal((await m.obtain(name)).kind, 'ready');
    const before = cache.peek('changed.ok.test')!.fingerprint256;
    // Another instance renewed one and deleted another while our bus was down.
    const other = await createSelfSignedCertificate('changed.ok.test', { days: 30 });
    await saveCertificate(storage, { domain: 'changed.ok.test', ca: issuer.ca, directory: issuer.directory, keyType: 'ecdsa-p256', ...other });
    for (const file of ['cert.pem', 'key.pem', 'meta.json']) await storage.delete(`certificates/${issuer.ca}/gone.ok.test/${file}`);

    const result = await m.revalidateCache();
    assert.equal(result.replaced, 2);
    assert.notEqual(cache.peek('changed.ok.test')?.fingerprint256, before);
    assert.equal(cache.peek('gone.ok.test'), undefined);
    assert.ok(cache.peek('same1.ok.test'));
  });
});
