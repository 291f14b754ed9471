// A managed certificate through the real CertificateManager and RenewalScheduler, on real file
// storage, with a stand-in issuer that records each order: one order for all the entry's names
// with the solvers managed.ts picked; found in storage afterwards (no second order); renewed by
// the scheduler without asking the policy (which denies everything here), all names again, and
// the renewed certificate is the one served.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ChallengeSolver } from '../../src/acme/authorize.ts';
import type { AcmeIssuer, IssuedCertificate, IssueOptions } from '../../src/acme/issuer.ts';
import { ManagedCertificates } from '../../src/issuance/managed.ts';
import { CertificateManager } from '../../src/issuance/manager.ts';
import { RenewalScheduler } from '../../src/maintain/scheduler.ts';
import { FileStorage } from '../../src/storage/file/store.ts';
import { CertificateCache } from '../../src/tls/cache.ts';
import { silentLogger } from '../../src/util/log.ts';
import { multiNameCertificate } from '../support/certificates.ts';
import { managerConfig } from '../support/config.ts';
import { tmpDir } from '../support/tmp.ts';

const DAY = 86_400_000;
const NAMES = ['m1.managed.test', 'm2.managed.test'];

test('a managed certificate: one order for all names, then renewed by the scheduler with no policy check', async (t) => {
  const storage = await FileStorage.open(await tmpDir(t, 'certgate-managed-'));
  const orders: Array<{ domain: string; opts: IssueOptions }> = [];
  const issuer = {
    ca: 'test-ca',
    directory: 'https://ca.test/dir',
    async issue(domain: string, opts: IssueOptions = {}): Promise<IssuedCertificate> {
      orders.push({ domain, opts });
      const { certPem, keyPem } = await multiNameCertificate(opts.names ?? [domain]);
      return { certPem, keyPem, keyType: 'ecdsa-p256', challenge: 'http-01', orderUrl: `https://ca.test/order/${orders.length}` };
    },
  };
  const solver = { type: 'http-01' } as unknown as ChallengeSolver;
  const cache = new CertificateCache(100);
  const managed = new ManagedCertificates([{ names: NAMES }], cache, () => [solver]);
  const asked: string[] = [];
  const policy = {
    decide: async (domain: string) => {
      asked.push(domain);
      return { allowed: false as const, reason: 'stand-in policy denies everything' };
    },
  };
  const manager = new CertificateManager(managerConfig(), { storage, issuer: issuer as unknown as AcmeIssuer, policy: policy as never, cache: managed, managed, logger: silentLogger() });

  const first = await manager.obtainManaged(NAMES[0]!);
  assert.equal(first.kind, 'ready');
  assert.equal(orders.length, 1);
  assert.deepEqual(orders[0]!.opts.names, NAMES, 'one order for every name of the entry');
  assert.deepEqual(orders[0]!.opts.solvers, [solver], 'with the solvers managed.ts picked');
  const issuedFp = first.kind === 'ready' ? first.certificate.fingerprint256 : '';
  assert.ok(managed.lookup(NAMES[1]!)?.context, 'served for the second name from memory');

  assert.equal((await manager.obtainManaged(NAMES[0]!)).kind, 'ready');
  assert.equal(orders.length, 1, 'stored: no second order');

  // First looked at when saved (filed for its renewal time), then 25 of 30 days later: inside
  // the renewal time (a third of the lifetime left).
  let now = Date.now() + 1000;
  const scheduler = new RenewalScheduler({
    storage,
    manager,
    policy,
    isManaged: (domain) => managed.isManaged(domain),
    fraction: 0.33,
    jitterMs: 0,
    concurrency: 1,
    logger: silentLogger(),
    now: () => now,
  });
  await scheduler.tick();
  await scheduler.idle();
  assert.equal(orders.length, 1, 'not due yet');
  now = Date.now() + 25 * DAY;
  await scheduler.tick();
  await scheduler.idle();
  assert.deepEqual(asked, [], 'the policy is not asked before renewing a managed certificate');
  assert.equal(orders.length, 2, 'renewed');
  assert.equal(orders[1]!.domain, NAMES[0]);
  assert.deepEqual(orders[1]!.opts.names, NAMES, 'the renewal orders every name again');
  const renewed = await manager.storedCertificate(NAMES[0]!);
  assert.notEqual(renewed?.meta.fingerprint256, issuedFp);
  assert.deepEqual(renewed?.meta.names, NAMES);
  assert.equal(managed.peek(NAMES[0]!)?.fingerprint256, renewed?.meta.fingerprint256, 'the renewed certificate is the one held');
});
