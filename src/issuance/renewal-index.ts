// The renewal and expiry indexes: small keys bucketed by UTC hour, so the maintainer lists only
// the buckets that are due (`storage.list('index/renewal/2026-11-23T18/')` is a directory read
// on file storage and an indexed range on Redis), never every certificate.
//
//   index/renewal/<hour>/<domain>  {ca, fingerprint256, notBefore, notAfter, checkAt, ...}
//     when the maintainer next looks at the certificate. A save files it under the current hour
//     (checkAt = now): the maintainer then works out the real renewal time (fraction, jitter,
//     ARI) and moves the entry to that hour.
//   index/expiry/<hour>/<domain>   {ca, fingerprint256, notAfter}   for cleanup of expired certificates.
//
// Entries are only written on save; an entry whose certificate has since been replaced or
// deleted (fingerprint differs, or gone) is dropped when the maintainer reaches it.
import { keys } from '../storage/keys.ts';
import { putInOrder, type PutEntry, type Storage } from '../storage/storage.ts';

/**
 * One entry of the renewal index (see the header): which certificate, and when to look at it next.
 */
export interface RenewalEntry {
  ca: string;
  domain: string;
  /** Which certificate this entry is about; a different stored fingerprint makes it stale. */
  fingerprint256: string;
  notBefore: string;
  notAfter: string;
  directory?: string;
  /** When the maintainer should look at it next (ms since epoch); decides the bucket. */
  checkAt: number;
  /** Renewal failures so far for this certificate (backoff). */
  failures?: number;
  /** ARI: whether the CA answers for this certificate, the window last fetched, the time picked in it, when to ask again. */
  ari?: { certId: string; supported: boolean; nextFetchAt: number; window?: { start: number; end: number; renewAt: number } };
  /** The policy denied renewal at this time (kept, not renewed). */
  deniedAt?: number;
}

/** One entry of the expiry index: which certificate expires in the entry's hour. */
export interface ExpiryEntry {
  ca: string;
  domain: string;
  fingerprint256: string;
  notAfter: string;
}

/** An index bucket's width. */
export const HOUR_MS = 3_600_000;

/** `2026-11-23T18`: the UTC hour a time falls in; sorts as a string. */
export function hourBucket(ms: number): string {
  return new Date(Math.floor(ms / HOUR_MS) * HOUR_MS).toISOString().slice(0, 13);
}

/** The first millisecond of a bucket named by hourBucket(). */
export function hourStart(bucket: string): number {
  return Date.parse(`${bucket}:00:00.000Z`);
}

/** Every hour bucket from `from` to `to` inclusive (both bucket names). */
export function bucketsBetween(from: string, to: string): string[] {
  const out: string[] = [];
  for (let t = hourStart(from); t <= hourStart(to); t += HOUR_MS) out.push(hourBucket(t));
  return out;
}

/** Files a freshly saved certificate in both indexes. */
export async function indexCertificate(
  storage: Storage,
  cert: { ca: string; domain: string; fingerprint256: string; notBefore: string; notAfter: string; directory?: string },
  now = Date.now(),
): Promise<void> {
  await putInOrder(storage, indexEntries(cert, now));
}

/**
 * The two index entries (expiry, then renewal) of a freshly saved certificate, as puts: saveCertificate
 * writes them in one putMany with the bundle, after its chain.
 */
export function indexEntries(
  cert: { ca: string; domain: string; fingerprint256: string; notBefore: string; notAfter: string; directory?: string },
  now = Date.now(),
): PutEntry[] {
  const entry: RenewalEntry = { ...cert, checkAt: now };
  const expiry: ExpiryEntry = { ca: cert.ca, domain: cert.domain, fingerprint256: cert.fingerprint256, notAfter: cert.notAfter };
  return [
    { key: keys.expiryIndex(hourBucket(Date.parse(cert.notAfter)), cert.domain), value: JSON.stringify(expiry) },
    { key: renewalKeyOf(entry), value: JSON.stringify(entry) },
  ];
}

/** The storage key an entry is filed under: its checkAt's hour bucket and its domain. */
export function renewalKeyOf(entry: Pick<RenewalEntry, 'checkAt' | 'domain'>): string {
  return keys.renewalIndex(hourBucket(entry.checkAt), entry.domain);
}

/**
 * Writes `entry` under renewalKeyOf(entry) and returns that key. The caller deletes the entry's
 * old key when checkAt moved it to another bucket.
 */
export async function putRenewalEntry(storage: Storage, entry: RenewalEntry): Promise<string> {
  const key = renewalKeyOf(entry);
  await storage.put(key, JSON.stringify(entry));
  return key;
}


/** Domain name of an index key (`index/renewal/<hour>/<domain>`). */
export function domainOfIndexKey(key: string): string {
  return key.slice(key.lastIndexOf('/') + 1);
}
