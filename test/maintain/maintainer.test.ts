// The maintainer asks for renewal information (ARI) through the configured issuer that issued the
// certificate (found by the directory its meta.json records), not through an ACME client of its own.
// The directories are closed loopback ports: anything but the stand-in issuers would fail to connect.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { CertificateIssuer } from '../../src/acme/issuers.ts';
import { ariCertId, type RenewalWindow } from '../../src/acme/plumbing/ari.ts';
import { silentLogger } from '../../src/util/log.ts';
import { Maintainer } from '../../src/maintain/maintainer.ts';
import { loadCertificate } from '../../src/issuance/store.ts';
import { FileStorage } from '../../src/storage/file/store.ts';
import type { ObtainOutcome, RenewOptions } from '../../src/issuance/manager.ts';
import { tmpDir } from '../support/tmp.ts';
import { seedCertificates } from './seed.ts';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/** An issuer that only answers ARI, recording what it was asked. */
function ariIssuer(directory: string, window: RenewalWindow | null): CertificateIssuer & { asked: string[][] } {
  const asked: string[][] = [];
  return {
    ca: `ca-of-${directory}`,
    directory,
    asked,
    issue: () => Promise.reject(new Error('not in this test')),
    renewalWindow: async (certId, domain) => {
      asked.push([certId, domain ?? '']);
      return window;
    },
  };
}

test('ARI is asked of the issuer whose directory issued the certificate; its window makes the renewal due, with `replaces`', async (t) => {
  const storage = await FileStorage.open(await tmpDir(t, 'certgate-maintainer-'));
  const domain = 'ari.maintainer.test';
  const first = ariIssuer('https://127.0.0.1:1/first/directory', { start: Date.now() + 30 * DAY, end: Date.now() + 31 * DAY });
  const second = ariIssuer('https://127.0.0.1:1/second/directory', { start: Date.now() - 2 * HOUR, end: Date.now() - HOUR, retryAfterMs: 60_000 });
  // 90 days with 80 left: far from due by the lifetime fraction; only the CA's window makes it due.
  await seedCertificates({ storage, ca: 'second-ca', directory: second.directory, domains: [domain], notBefore: new Date(Date.now() - 10 * DAY), notAfter: new Date(Date.now() + 80 * DAY) });
  const bundle = await loadCertificate(storage, ['second-ca'], domain);
  const certId = ariCertId(bundle!.certPem);
  assert.ok(certId, 'the seeded certificate has an AKI');

  const renewals: { domain: string; opts: RenewOptions | undefined }[] = [];
  const maintainer = new Maintainer(
    { fraction: 1 / 3, concurrency: 1, checkInterval: 60_000, jitter: 0, leaderLockTtl: 10_000, expiredGrace: 7 * DAY, staleChallengeAge: HOUR },
    {
      storage,
      manager: {
        renew: async (name, opts): Promise<ObtainOutcome> => {
          renewals.push({ domain: name, opts });
          return { kind: 'failed', reason: 'not in this test' };
        },
        delete: async () => undefined,
      },
      policy: { decide: async () => ({ allowed: true, source: 'allow' }) },
      issuers: [first, second],
      logger: silentLogger(),
    },
  );
  t.after(() => maintainer.stop());
  await maintainer.runOnce();
  await maintainer.scheduler.idle();

  assert.deepEqual(second.asked, [[certId, domain]], 'the issuing CA was asked, once, for this certificate');
  assert.deepEqual(first.asked, [], 'the other issuer was not asked');
  assert.equal(renewals.length, 1, 'the CA window made the renewal due');
  assert.deepEqual(renewals[0]?.opts?.replaces, { certId, ca: 'second-ca' });
});
