// certificate-expiring from the expiry index: a certificate inside 14 days of notAfter that no
// renewal replaced is found, once per certificate and notAfter whichever leader finds it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { tmpDir } from '../support/tmp.ts';
import { FileStorage } from '../../src/storage/file/store.ts';
import { keys } from '../../src/storage/keys.ts';
import { hourBucket } from '../../src/issuance/renewal-index.ts';
import { findExpiring, isExpiring } from '../../src/webhooks/expiring.ts';
import { enqueueDelivery } from '../../src/webhooks/deliveries.ts';
import { fromExpiring } from '../../src/webhooks/events.ts';

const DAY = 86_400_000;

async function store(storage: FileStorage, domain: string, notBefore: number, notAfter: number, indexedFingerprint: string, storedFingerprint: string) {
  const meta = { domain, ca: 'ca1', notBefore: new Date(notBefore).toISOString(), notAfter: new Date(notAfter).toISOString(), fingerprint256: storedFingerprint };
  await storage.put(keys.certificateMeta('ca1', domain), JSON.stringify(meta));
  await storage.put(keys.expiryIndex(hourBucket(notAfter), domain), JSON.stringify({ ca: 'ca1', domain, fingerprint256: indexedFingerprint, notAfter: meta.notAfter }));
}

test('isExpiring: 14 days before notAfter, or the last third of a short lifetime; never once expired', () => {
  const now = Date.parse('2026-06-01T00:00:00Z');
  assert.equal(isExpiring(now - 80 * DAY, now + 10 * DAY, now), true);
  assert.equal(isExpiring(now - 70 * DAY, now + 20 * DAY, now), false);
  assert.equal(isExpiring(now - 3 * DAY, now + 3 * DAY, now), false, '6-day certificate at half-life');
  assert.equal(isExpiring(now - 5 * DAY, now + 1 * DAY, now), true, '6-day certificate in its last third');
  assert.equal(isExpiring(now - 90 * DAY, now - 1, now), false);
});

test('findExpiring: only certificates still stored as indexed (not renewed) and inside the window', async (t) => {
  const storage = await FileStorage.open(await tmpDir(t));
  t.after(() => storage.close());
  const now = Date.now();
  await store(storage, 'expiring.test', now - 80 * DAY, now + 10 * DAY, 'AA', 'AA');
  await store(storage, 'renewed.test', now - 80 * DAY, now + 10 * DAY, 'AA', 'BB');
  await store(storage, 'later.test', now - 60 * DAY, now + 13 * DAY + 23 * 3_600_000, 'CC', 'CC');
  await store(storage, 'far.test', now - 10 * DAY, now + 80 * DAY, 'DD', 'DD');
  const found = await findExpiring(storage, now);
  assert.deepEqual(found.map((c) => c.domain).sort(), ['expiring.test', 'later.test']);
  // Found again (next scan, another leader): the same webhook-id, filed once.
  const [first] = found.filter((c) => c.domain === 'expiring.test');
  const a = fromExpiring(first!, new Date(now).toISOString());
  const b = fromExpiring(first!, new Date(now + 3_600_000).toISOString());
  assert.equal(a.id, b.id);
  assert.equal(await enqueueDelivery(storage, a, 'http://127.0.0.1:9/h', now), true);
  assert.equal(await enqueueDelivery(storage, b, 'http://127.0.0.1:9/h', now), false);
});
