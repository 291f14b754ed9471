// Cleanup by the maintainer leader, from the expiry index (never a full listing):
//   - certificates expired more than `expiredGrace` ago are deleted (storage, every cache);
//   - challenge answers left in storage by an issuance that died (a normal issuance removes its
//     own) are deleted once this leader has seen them for `staleChallengeAge`. `challenges/`
//     only ever holds the few in-flight challenges, so listing it is cheap.
// Locks need no sweep: Redis locks expire by themselves (PX) and a file lock is taken over by
// the next holder of that name.
import type { Logger } from '../log.ts';
import { loadCertificate } from '../storage/certificates.ts';
import { keys } from '../storage/layout.ts';
import type { Storage } from '../storage/storage.ts';
import { bucketsBetween, domainOfIndexKey, HOUR_MS, hourBucket, readEntry, type ExpiryEntry } from './renewal-index.ts';

export interface CleanupOptions {
  storage: Storage;
  deleteCertificate(domain: string, reason: string): Promise<void>;
  expiredGraceMs: number;
  staleChallengeAgeMs: number;
  logger: Logger;
  now?: () => number;
}

export interface CleanupResult {
  certificatesDeleted: number;
  challengesDeleted: number;
}

export class Cleanup {
  private readonly now: () => number;
  /** Challenge keys → when this leader first saw them. */
  private readonly challengesSeen = new Map<string, number>();

  constructor(private readonly opts: CleanupOptions) {
    this.now = opts.now ?? Date.now;
  }

  async sweep(): Promise<CleanupResult> {
    const certificatesDeleted = await this.expiredCertificates();
    const challengesDeleted = await this.staleChallenges();
    return { certificatesDeleted, challengesDeleted };
  }

  private async expiredCertificates(): Promise<number> {
    const { storage, logger, expiredGraceMs } = this.opts;
    const now = this.now();
    const upTo = hourBucket(now - expiredGraceMs);
    const stored = (await storage.get(keys.expiryCursor))?.toString('utf8').trim();
    // Without a cursor (first run): the backfill sets one; otherwise start a day before due.
    let cursor = stored && /^\d{4}-\d\d-\d\dT\d\d$/.test(stored) ? stored : hourBucket(now - expiredGraceMs - 24 * HOUR_MS);
    if (cursor > upTo) cursor = upTo;
    let deleted = 0;
    let oldestKept: string | undefined;
    for (const bucket of bucketsBetween(cursor, upTo)) {
      let kept = 0;
      for (const key of await storage.list(keys.expiryIndexBucket(bucket))) {
        const domain = domainOfIndexKey(key);
        try {
          const entry = await readEntry<ExpiryEntry>(storage, key);
          if (entry && Date.parse(entry.notAfter) + expiredGraceMs > now) {
            kept++;
            continue;
          }
          if (entry) {
            const bundle = await loadCertificate(storage, [entry.ca], domain);
            // Only the certificate this entry is about: a renewed one has its own entry.
            if (bundle && bundle.fingerprint256 === entry.fingerprint256) {
              await this.opts.deleteCertificate(domain, `expired ${entry.notAfter}, past the grace period`);
              deleted++;
            }
          }
          await storage.delete(key);
        } catch (err) {
          kept++;
          logger.warn({ domain, step: 'cleanup-expired', err }, 'could not clean up expired certificate');
        }
      }
      if (kept > 0) oldestKept ??= bucket;
    }
    const next = oldestKept ?? upTo;
    if (next !== stored) await storage.put(keys.expiryCursor, next);
    if (deleted > 0) logger.info({ step: 'cleanup-expired', deleted }, 'expired certificates deleted');
    return deleted;
  }

  private async staleChallenges(): Promise<number> {
    const { storage, logger, staleChallengeAgeMs } = this.opts;
    const now = this.now();
    const present = new Set(await storage.list('challenges/'));
    for (const key of this.challengesSeen.keys()) if (!present.has(key)) this.challengesSeen.delete(key);
    let deleted = 0;
    for (const key of present) {
      const seen = this.challengesSeen.get(key);
      if (seen === undefined) {
        this.challengesSeen.set(key, now);
        continue;
      }
      if (now - seen < staleChallengeAgeMs) continue;
      try {
        await storage.delete(key);
        this.challengesSeen.delete(key);
        deleted++;
      } catch (err) {
        logger.warn({ step: 'cleanup-challenges', key, err }, 'could not delete stale challenge');
      }
    }
    if (deleted > 0) logger.info({ step: 'cleanup-challenges', deleted }, 'stale challenge answers deleted');
    return deleted;
  }
}
