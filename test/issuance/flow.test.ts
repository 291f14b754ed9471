// CertificateManager's issuance flow on real file storage and a real policy, with stand-in
// issuers (the real AcmeIssuer against Pebble is in test/e2e/issuance*.test.ts): staging-first
// after a production failure, fallback to the next issuer, a CA pause after 429 + Retry-After,
// giving up and the operator's reset, on-demand work going ahead of a renewal backlog, and an
// ARI renewal's `replaces` going only to the CA that issued the certificate.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createSelfSignedCertificate } from '../../src/acme/x509.ts';
import { AcmeError, ACME_ERROR } from '../../src/acme/plumbing/errors.ts';
import type { IssuedCertificate, IssueOptions } from '../../src/acme/issuer.ts';
import { SOLVER_ERROR } from '../../src/acme/authorize.ts';
import type { CertificateIssuer, IssuerChoice } from '../../src/acme/issuers.ts';
import type { RetrySchedule } from '../../src/issuance/backoff.ts';
import { silentLogger } from '../../src/util/log.ts';
import { LETS_ENCRYPT_BUDGETS, RateBudgets } from '../../src/issuance/budgets.ts';
import { OnDemandPolicy } from '../../src/policy/policy.ts';
import { FileStorage } from '../../src/storage/file/store.ts';
import { StorageError } from '../../src/storage/storage.ts';
import { CertificateCache } from '../../src/tls/cache.ts';
import { CertificateManager } from '../../src/issuance/manager.ts';
import { managerConfig, onDemandSection } from '../support/config.ts';

class StandInIssuer implements CertificateIssuer {
  readonly directory: string;
  fail: ((domain: string) => Error | undefined) | undefined;
  delayMs = 5;
  /** When set, every issue() waits for it. */
  gate: Promise<void> | undefined;
  /** The options of every issue() call, in order. */
  readonly orders: IssueOptions[] = [];
  constructor(
    readonly ca: string,
    private readonly calls: string[],
  ) {
    this.directory = `https://${ca}.test/dir`;
  }
  async issue(domain: string, opts: IssueOptions = {}): Promise<IssuedCertificate> {
    this.calls.push(`${this.ca}:${domain}`);
    this.orders.push(opts);
    await sleep(this.delayMs);
    await this.gate;
    const err = this.fail?.(domain);
    if (err) throw err;
    const { certPem, keyPem } = await createSelfSignedCertificate(domain, { days: 30 });
    return { certPem, keyPem, keyType: 'ecdsa-p256', challenge: 'http-01', orderUrl: `${this.directory}/order/${domain}` };
  }
}

const invalid = (domain: string) => new AcmeError({ type: `${ACME_ERROR}connection`, status: 400, detail: 'connection refused', step: 'authorization', domain });
const FAST: RetrySchedule = { delays: [1], then: 1, giveUpAfter: 3_600_000 };

describe('CertificateManager issuance flow', () => {
  let dir: string;
  let storage: FileStorage;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'certgate-flow-'));
    storage = await FileStorage.open(dir);
  });
  after(async () => {
    await storage.close();
    await rm(dir, { recursive: true, force: true });
  });

  function manager(issuers: IssuerChoice[], opts: { retry?: RetrySchedule; max?: number; budgets?: RateBudgets } = {}) {
    const policy = new OnDemandPolicy(onDemandSection({ allow: ['*.ok.test'], askTimeout: 100, askCacheTtl: 1000, askDenyCacheTtl: 1000 }), { logger: silentLogger() });
    const config = managerConfig({ onDemand: { maxConcurrentIssuances: opts.max ?? 8 } });
    return new CertificateManager({ ...config, acme: { ...config.acme, retry: opts.retry ?? FAST } }, {
      storage,
      issuer: issuers[0]!.production,
      issuers,
      policy,
      cache: new CertificateCache(100),
      logger: silentLogger(),
      ...(opts.budgets ? { budgets: opts.budgets } : {}),
    });
  }

  test('after a production failure, staging validates first; production again only once staging succeeds', async () => {
    const calls: string[] = [];
    const prod = new StandInIssuer('prod1', calls);
    const staging = new StandInIssuer('staging1', calls);
    const m = manager([{ production: prod, staging }]);
    const name = 'st.ok.test';
    prod.fail = invalid;
    staging.fail = invalid;
    assert.equal((await m.obtain(name)).kind, 'failed');
    await sleep(5);
    assert.equal((await m.obtain(name)).kind, 'failed');
    prod.fail = undefined;
    staging.fail = undefined;
    await sleep(5);
    assert.equal((await m.obtain(name)).kind, 'ready');
    assert.deepEqual(calls, [`prod1:${name}`, `staging1:${name}`, `staging1:${name}`, `prod1:${name}`]);
    assert.equal(await m.backoff(name), null, 'success clears the retry state');
  });

  test('when the first issuer fails for a name the next is tried; the certificate is stored under it', async () => {
    const calls: string[] = [];
    const a = new StandInIssuer('ca-a', calls);
    const b = new StandInIssuer('ca-b', calls);
    a.fail = () => new AcmeError({ type: 'urn:certgate:error:network', status: 0, detail: 'connect ECONNREFUSED', step: 'directory' });
    const m = manager([{ production: a }, { production: b }]);
    const outcome = await m.obtain('two.ok.test');
    assert.equal(outcome.kind === 'ready' && outcome.certificate.ca, 'ca-b');
    assert.deepEqual(calls, ['ca-a:two.ok.test', 'ca-b:two.ok.test']);
    // Another manager with the same issuers loads it from ca-b's directory.
    const other = await manager([{ production: a }, { production: b }]).obtain('two.ok.test');
    assert.equal(other.kind === 'ready' && other.source, 'storage');
  });

  test('a 429 with Retry-After on new-order pauses that CA for every name, not just this one', async () => {
    const calls: string[] = [];
    const a = new StandInIssuer('ca-limited', calls);
    const b = new StandInIssuer('ca-spare', calls);
    a.fail = (domain) => new AcmeError({ type: `${ACME_ERROR}rateLimited`, status: 429, detail: 'too many new orders', step: 'new-order', domain, retryAfterMs: 3_600_000 });
    const m = manager([{ production: a }, { production: b }]);
    assert.equal((await m.obtain('first.ok.test')).kind, 'ready');
    assert.equal((await m.obtain('second.ok.test')).kind, 'ready');
    assert.deepEqual(calls, ['ca-limited:first.ok.test', 'ca-spare:first.ok.test', 'ca-spare:second.ok.test']);
    // Shared: a fresh manager (another instance) sees the pause too.
    const lonely = manager([{ production: a }]);
    const outcome = await lonely.obtain('third.ok.test');
    assert.equal(outcome.kind, 'failed');
    assert.match((outcome as { reason: string }).reason, /paused until/);
    assert.equal(calls.length, 3, 'no order to the paused CA');
    assert.equal(await lonely.backoff('third.ok.test'), null, 'a paused CA is not the name\'s fault');
  });

  test('two instances failing for one name at once: one order; the other sees the backoff under the lock', async () => {
    const calls: string[] = [];
    const ca = new StandInIssuer('ca-race', calls);
    ca.fail = invalid;
    const slow: RetrySchedule = { delays: [60_000], then: 60_000, giveUpAfter: 3_600_000 };
    const [a, b] = [manager([{ production: ca }], { retry: slow }), manager([{ production: ca }], { retry: slow })];
    const outcomes = await Promise.all([a.obtain('race.ok.test'), b.obtain('race.ok.test')]);
    assert.deepEqual(outcomes.map((o) => o.kind), ['failed', 'failed']);
    assert.deepEqual(calls, ['ca-race:race.ok.test']);
    assert.match((await b.backoff('race.ok.test')) ?? '', /in backoff after 1 failure/);
  });

  test('a solver whose storage write fails mid-order: our storage, not the CA; no backoff, the next request orders again', async () => {
    const calls: string[] = [];
    const ca = new StandInIssuer('ca-storage', calls);
    // What obtainCertificate throws when present() cannot write the challenge token.
    ca.fail = (domain) =>
      new AcmeError({
        type: SOLVER_ERROR,
        status: 0,
        detail: 'http-01 solver could not present the challenge: redis storage: write of "challenges/http-01/t" failed: Redis is unreachable',
        step: 'challenge',
        domain,
        cause: new StorageError('redis storage: write of "challenges/http-01/t" failed: Redis is unreachable', 'challenges/http-01/t', 'write'),
      });
    const slow: RetrySchedule = { delays: [60_000], then: 60_000, giveUpAfter: 3_600_000 };
    const m = manager([{ production: ca }], { retry: slow });
    const name = 'blip.ok.test';
    const failed = await m.obtain(name);
    assert.equal(failed.kind, 'failed');
    assert.match((failed as { reason: string }).reason, /blip\.ok\.test.*challenge.*Redis is unreachable/);
    assert.equal(await m.backoff(name), null, 'a storage failure is not recorded as the name\'s failure');
    ca.fail = undefined;
    assert.equal((await m.obtain(name)).kind, 'ready');
    assert.deepEqual(calls, [`ca-storage:${name}`, `ca-storage:${name}`]);
  });

  test('a failure storage could not take is kept in memory, backs the name off, and is reported (admin API)', async () => {
    const calls: string[] = [];
    const ca = new StandInIssuer('ca-norecord', calls);
    ca.fail = invalid;
    const slow: RetrySchedule = { delays: [60_000], then: 60_000, giveUpAfter: 3_600_000 };
    const m = manager([{ production: ca }], { retry: slow });
    const name = 'unrecorded.ok.test';
    const put = storage.put.bind(storage);
    storage.put = async (key, value) => {
      if (key.startsWith('retry/names/')) throw new StorageError(`file storage: write of "${key}" failed: disk full`, key, 'write');
      return put(key, value);
    };
    try {
      assert.equal((await m.obtain(name)).kind, 'failed');
    } finally {
      storage.put = put;
    }
    assert.match((await m.backoff(name)) ?? '', /in backoff after 1 failure/);
    const record = await m.failureRecord(name);
    assert.ok(record, 'the memory-only record is reported');
    assert.equal(record.failures, 1);
    assert.equal(record.step, 'authorization');
    assert.match(record.reason, /connection refused/);
  });

  test('a name is given up after giveUpAfter; an admin renewal resets it', async () => {
    const calls: string[] = [];
    const ca = new StandInIssuer('ca-giveup', calls);
    ca.fail = invalid;
    const m = manager([{ production: ca }], { retry: { delays: [1], then: 1, giveUpAfter: 0 } });
    assert.equal((await m.obtain('dead.ok.test')).kind, 'failed');
    await sleep(5);
    const again = await m.obtain('dead.ok.test');
    assert.match((again as { reason: string }).reason, /given up after 1 failure/);
    assert.equal(calls.length, 1);
    ca.fail = undefined;
    assert.equal((await m.renew('dead.ok.test', { reason: 'admin' })).kind, 'ready');
    assert.equal(await m.backoff('dead.ok.test'), null);
  });

  test('a renewal backlog does not starve a new customer: the on-demand order takes the next free slot', async () => {
    const calls: string[] = [];
    const ca = new StandInIssuer('ca-queue', calls);
    let open!: () => void;
    ca.gate = new Promise((resolve) => (open = resolve));
    const m = manager([{ production: ca }], { max: 1 });
    const renewals = Array.from({ length: 6 }, (_, i) => m.renew(`r${i}.ok.test`));
    // r0 holds the only slot and r1..r5 wait; then the customer arrives behind them.
    while (m.issuanceQueue.waiting < 5) await sleep(5);
    const customer = m.obtain('new-customer.ok.test');
    while (m.issuanceQueue.waiting < 6) await sleep(5);
    open();
    assert.equal((await customer).kind, 'ready');
    await Promise.all(renewals);
    assert.equal(calls.indexOf('ca-queue:new-customer.ok.test'), 1, `order was ${calls.join(' ')}`);
  });

  test('a renewal of a certificate someone has renewed since the caller found it due orders nothing: the newer one is returned', async () => {
    const calls: string[] = [];
    const m = manager([{ production: new StandInIssuer('ca-once', calls) }]);
    const name = 'renewed-twice.ok.test';
    const first = await m.obtain(name);
    assert.ok(first.kind === 'ready');
    const due = first.certificate.fingerprint256;
    // Two renewals of that certificate one after the other: the handshake's and the scheduler's.
    const renewed = await m.renew(name, { replacing: due });
    assert.ok(renewed.kind === 'ready' && renewed.source === 'issued' && renewed.certificate.fingerprint256 !== due);
    const late = await m.renew(name, { replacing: due });
    assert.ok(late.kind === 'ready' && late.source === 'storage', late.kind === 'ready' ? late.source : late.kind);
    assert.equal(late.certificate.fingerprint256, renewed.certificate.fingerprint256);
    assert.deepEqual(calls, [`ca-once:${name}`, `ca-once:${name}`], 'one order for the renewal');
    // Without `replacing` (an admin renewal) the current certificate is replaced, as before.
    const admin = await m.renew(name, { reason: 'admin' });
    assert.ok(admin.kind === 'ready' && admin.source === 'issued' && admin.certificate.fingerprint256 !== renewed.certificate.fingerprint256);
  });

  test('an ARI renewal sends `replaces` only to the CA that issued the certificate; orders to others are plain and budgeted', async () => {
    const calls: string[] = [];
    const first = new StandInIssuer('ca-preferred', calls);
    const issuing = new StandInIssuer('ca-issuing', calls);
    first.fail = (domain) => new AcmeError({ type: `${ACME_ERROR}serverInternal`, status: 500, detail: 'internal error', step: 'new-order', domain });
    const budgets = new RateBudgets(LETS_ENCRYPT_BUDGETS, { budgetShare: 1 }, { storage, logger: silentLogger() }); // every CA budgeted
    const m = manager([{ production: first }, { production: issuing }], { budgets });
    const name = 'ari.ok.test';
    const left = async (budget: 'newOrders' | 'duplicates', ca: string) => (await budgets.remaining(budget, ca, name)).remaining;

    const renewed = await m.renew(name, { profile: 'tlsserver', replaces: { certId: 'aki.serial-1', ca: 'ca-issuing' } });
    assert.equal(renewed.kind === 'ready' && renewed.certificate.ca, 'ca-issuing');
    assert.deepEqual(first.orders, [{ profile: 'tlsserver' }], 'the preferred CA did not issue it: a plain order');
    assert.deepEqual(issuing.orders, [{ profile: 'tlsserver', replaces: 'aki.serial-1' }]);
    assert.equal(await left('newOrders', 'ca-preferred'), 299, 'the plain order is budgeted');
    assert.equal(await left('newOrders', 'ca-issuing'), 300, 'the order with `replaces` is exempt');
    assert.equal(await left('duplicates', 'ca-issuing'), 5, 'and so is its certificate');

    // A certificate from a CA no longer among the issuers: every order is a plain one.
    first.fail = undefined;
    const moved = await m.renew(name, { replaces: { certId: 'aki.serial-2', ca: 'ca-removed' } });
    assert.equal(moved.kind === 'ready' && moved.certificate.ca, 'ca-preferred');
    assert.deepEqual(first.orders.at(-1), {});
    assert.equal(await left('newOrders', 'ca-preferred'), 298);
    assert.equal(await left('duplicates', 'ca-preferred'), 4);
  });
});
