// certificate-expiring: the certificates near their notAfter that no renewal has replaced, found by
// the maintainer leader from the expiry index (never a full listing):
//   1. list the index's hour buckets from now to now + 14 days (a pass reads ~337 small buckets;
//      the dispatcher runs it at most hourly)
//   2. an entry counts only while its certificate is still the stored one (same fingerprint): a
//      successful renewal stored another, whose notAfter is far off
//   3. "near" is 14 days before notAfter, or the last third of the lifetime for certificates that
//      live less than six weeks (a 6-day certificate would otherwise be "expiring" from birth)
// An expired certificate is the cleanup's (src/maintain/cleanup.ts), not reported here.
import { getJson, type Storage } from '../storage/storage.ts';
import { keys } from '../storage/keys.ts';
import { bucketsBetween, hourBucket, type ExpiryEntry } from '../issuance/renewal-index.ts';
import type { CertificateMeta } from '../issuance/store.ts';
import type { ExpiringCertificate } from './events.ts';

/** How long before notAfter a certificate with no successful renewal is reported (the 14 days). */
export const EXPIRING_WINDOW_MS = 14 * 86_400_000;

/** Step 3: whether a certificate valid from `notBefore` to `notAfter` is expiring at `now`. */
export function isExpiring(notBefore: number, notAfter: number, now: number): boolean {
  const window = Math.min(EXPIRING_WINDOW_MS, (notAfter - notBefore) / 3);
  return notAfter > now && notAfter - now <= window;
}

/** Steps 1-3: the stored certificates expiring at `now`, each once. */
export async function findExpiring(storage: Storage, now: number): Promise<ExpiringCertificate[]> {
  const found = new Map<string, ExpiringCertificate>();
  for (const bucket of bucketsBetween(hourBucket(now), hourBucket(now + EXPIRING_WINDOW_MS))) {
    for (const key of await storage.list(keys.expiryIndexBucket(bucket))) {
      const entry = await getJson<ExpiryEntry>(storage, key);
      if (!entry) continue;
      const meta = await getJson<CertificateMeta>(storage, keys.certificateMeta(entry.ca, entry.domain));
      if (!meta || meta.fingerprint256 !== entry.fingerprint256) continue;
      if (!isExpiring(Date.parse(meta.notBefore), Date.parse(meta.notAfter), now)) continue;
      found.set(`${entry.ca}/${entry.domain}`, { domain: entry.domain, ca: entry.ca, notAfter: meta.notAfter, fingerprint256: meta.fingerprint256 });
    }
  }
  return [...found.values()];
}
