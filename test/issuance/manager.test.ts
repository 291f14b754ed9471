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
import { silentLogger } from '../../src/util/log.ts';
import { OnDemandPolicy } from '../../src/policy/policy.ts';
import { saveCertificate } from '../../src/issuance/store.ts';
import { FileStorage } from '../../src/storage/file/store.ts';
import { CountingStorage } from '../support/gateway.ts';
import { CertificateCache } from '../../src/tls/cache.ts';
import { CertificateManager, type CertificateManagerDeps } from '../../src/issuance/manager.ts';
import { capturingLogger } from '../support/log-lines.ts';
import { managerConfig, onDemandSection } from '../support/config.ts';

class StandInIssuer {
  readonly ca = 'test-ca';
  readonly directory = 'https://ca.test/dir';
  calls: string[] = [];
  active = 0;
  maxActive = 0;
  failFor = new Set<string>();
  /** While set, every order waits for it (a CA that has not answered yet). */
  gate: Promise<void> | undefined;

  async issue(domain: string): Promise<IssuedCertificate> {
    this.calls.push(domain);
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    try {
      await this.gate;
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

  function manager(issuer: StandInIssuer, maxConcurrentIssuances = 8, extra: Partial<CertificateManagerDeps> = {}, limits: Record<string, unknown> = {}) {
    const cache = new CertificateCache(100);
    const policy = new OnDemandPolicy(onDemandSection({ allow: ['**.ok.test'], askTimeout: 100, askCacheTtl: 1000, askDenyCacheTtl: 1000 }), { logger: silentLogger() });
    const config = managerConfig({ onDemand: { maxConcurrentIssuances, limits } });
    const m = new CertificateManager(config, { storage, issuer: issuer as unknown as AcmeIssuer, policy, cache, logger: silentLogger(), ...extra });
    return { m, cache };
  }

  /** Holds every order of `issuer` until the returned function is called. */
  function holdOrders(issuer: StandInIssuer): () => void {
    let open!: () => void;
    issuer.gate = new Promise<void>((resolve) => (open = resolve));
    return () => {
      issuer.gate = undefined;
      open();
    };
  }

  /** Yields to the event loop until `done()` (storage reads are real I/O), at most 2,000 times. */
  async function until(done: () => boolean, what: string): Promise<void> {
    for (let i = 0; i < 2_000 && !done(); i++) await sleep(5);
    assert.ok(done(), `never happened: ${what}`);
  }

  test('concurrent requests for one name share one issuance', async () => {
    const issuer = new StandInIssuer();
    const { m, cache } = manager(issuer);
    const outcomes = await Promise.all(Array.from({ length: 20 }, () => m.obtain('same.ok.test')));
    assert.deepEqual(issuer.calls, ['same.ok.test']);
    assert.ok(outcomes.every((o) => o.kind === 'ready'));
    assert.ok(cache.get('same.ok.test'));
  });

  test("an issuance stores its bundle and index entries in one putMany, key first, and puts nothing else", async () => {
    const issuer = new StandInIssuer();
    const { m } = manager(issuer);
    const before = { ...storage.counts };
    const order: string[] = [];
    const realPutMany = storage.putMany.bind(storage);
    storage.putMany = (entries) => {
      order.push(...entries.map((e) => e.key.replace(/^certificates\/[^/]+\/[^/]+\//, '').replace(/\/[^/]+\/batch\.ok\.test$/, '')));
      return realPutMany(entries);
    };
    try {
      assert.equal((await m.obtain('batch.ok.test')).kind, 'ready');
    } finally {
      delete (storage as { putMany?: unknown }).putMany;
    }
    assert.equal(storage.counts.putMany - before.putMany, 1, 'one batch');
    assert.equal(storage.counts.put - before.put, 5, 'its five values, and no other put');
    assert.deepEqual(order, ['key.pem', 'meta.json', 'cert.pem', 'index/expiry', 'index/renewal']);
    const stored = await storage.inner.get('certificates/test-ca/batch.ok.test/cert.pem');
    assert.ok(stored?.toString().includes('BEGIN CERTIFICATE'));
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

  test('names waiting for a CA slot hold no issuance lock; the lock comes with the slot, then storage is read again', async () => {
    const issuer = new StandInIssuer();
    const { m } = manager(issuer, 1);
    const open = holdOrders(issuer);
    const first = m.obtain('busy.q1.ok.test');
    await until(() => issuer.calls.length === 1, 'the first order started');
    const waiting = [m.obtain('wait1.q1.ok.test'), m.obtain('wait2.q1.ok.test')];
    await until(() => m.issuanceQueue.waiting === 2, 'two names queued for the one slot');
    const locks = (await storage.list('locks/')).filter((k) => k.includes('.q1.'));
    assert.deepEqual(locks, ['locks/issue/busy.q1.ok.test.lock'], 'only the name being ordered holds its lock');

    // Another instance on the same storage is not held up by our queue: it issues wait1 now.
    const otherIssuer = new StandInIssuer();
    const other = await manager(otherIssuer).m.obtain('wait1.q1.ok.test');
    assert.equal(other.kind === 'ready' && other.source, 'issued');

    open();
    const [busy, wait1, wait2] = await Promise.all([first, waiting[0]!, waiting[1]!]);
    assert.equal(busy.kind === 'ready' && busy.source, 'issued');
    assert.equal(wait1.kind === 'ready' && wait1.source, 'storage', 'storage read again once the slot and lock were ours');
    assert.equal(wait1.kind === 'ready' && other.kind === 'ready' && wait1.certificate.fingerprint256 === other.certificate.fingerprint256, true);
    assert.equal(wait2.kind === 'ready' && wait2.source, 'issued');
    assert.deepEqual(issuer.calls, ['busy.q1.ok.test', 'wait2.q1.ok.test'], 'no second order for wait1');
  });

  test('the queue is bounded: a new name beyond maxQueuedIssuances gets no order, a fallback at once and a log line', async () => {
    const issuer = new StandInIssuer();
    const { logger, lines } = capturingLogger();
    const { m } = manager(issuer, 1, { logger }, { maxQueuedIssuances: 2 });
    const open = holdOrders(issuer);
    const queued = [m.obtain('busy.q2.ok.test')];
    await until(() => issuer.calls.length === 1, 'the first order started');
    queued.push(m.obtain('wait1.q2.ok.test'), m.obtain('wait2.q2.ok.test'));
    await until(() => m.issuanceQueue.waiting === 2, 'two names queued');
    // A third waiter would be over the bound: answered without joining the queue.
    let over: Awaited<ReturnType<typeof m.obtain>> | undefined;
    void m.obtain('over.q2.ok.test').then((o) => (over = o));
    await until(() => over !== undefined || m.issuanceQueue.waiting > 2, 'the name over the bound was answered or queued');
    assert.equal(m.issuanceQueue.waiting, 2, 'the queue never grew past its bound');
    assert.equal(over?.kind, 'failed');
    assert.match((over as { reason: string }).reason, /onDemand\.limits\.maxQueuedIssuances/);
    const warning = lines.find((l) => l.step === 'queue-full');
    assert.equal(warning?.domain, 'over.q2.ok.test');
    assert.equal(warning?.level, 40, 'a warning');
    assert.deepEqual(await storage.list('locks/issue/over.q2.ok.test.lock'), [], 'no lock taken for it');

    open();
    for (const o of await Promise.all(queued)) assert.equal(o.kind, 'ready');
    // Not held against the name: once the queue has room it is ordered.
    const again = await m.obtain('over.q2.ok.test');
    assert.equal(again.kind === 'ready' && again.source, 'issued');
    // The two waiters may reach the queue in either order (each passes async gates first); what
    // matters is one order each, and the turned-away name's only order coming after them.
    assert.deepEqual(issuer.calls.slice(1, 3).sort(), ['wait1.q2.ok.test', 'wait2.q2.ok.test']);
    assert.deepEqual([issuer.calls[0], issuer.calls[3], issuer.calls.length], ['busy.q2.ok.test', 'over.q2.ok.test', 4]);
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
});
