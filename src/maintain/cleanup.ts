// Cleanup by the maintainer leader, from the expiry index (never a full listing):
//   - certificates expired more than `expiredGrace` ago are deleted (storage, every cache);
//   - challenge answers left in storage by an issuance that died (a normal issuance removes its
//     own) are deleted once this leader has seen them for `staleChallengeAge`. `challenges/`
//     only ever holds the few in-flight challenges, so listing it is cheap. A dns-01 record
//     (`challenges/dns-01/`) is first removed from DNS through the provider; if that fails the
//     key stays and is tried again next sweep.
//   - file storage: lock files whose holder died (expired and never released) are removed by
//     taking the lock over and releasing it, the storage's own safe path. Redis locks expire by
//     themselves (PX), so nothing is listed there (listing locks on Redis would be a SCAN).
import type { Logger } from '../util/log.ts';
import type { DnsProvider } from '../acme/dns/provider.ts';
import { removeLeftoverRecord } from '../acme/dns01.ts';
import { loadCertificate } from '../issuance/store.ts';
import { keys } from '../storage/keys.ts';
import { getJson, type Storage } from '../storage/storage.ts';
import { bucketsBetween, domainOfIndexKey, HOUR_MS, hourBucket, type ExpiryEntry } from '../issuance/renewal-index.ts';

/** Where to clean and how old an expired certificate or a left-over challenge must be. */
export interface CleanupOptions {
  storage: Storage;
  deleteCertificate(domain: string, reason: string): Promise<void>;
  expiredGraceMs: number;
  staleChallengeAgeMs: number;
  /** Removes left-over dns-01 records; without it their keys are deleted (nothing else could remove the record). */
  dnsProvider?: DnsProvider;
  logger: Logger;
  now?: () => number;
}

/** What one sweep removed. */
export interface CleanupResult {
  certificatesDeleted: number;
  challengesDeleted: number;
  locksRemoved: number;
}

const LOCKS_PREFIX = 'locks/';
const LOCK_FILE_SUFFIX = '.lock';

/** The cleanup of the header; call sweep() only on the maintainer leader. */
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
    const locksRemoved = this.opts.storage.description.startsWith('file:') ? await this.staleFileLocks() : 0;
    return { certificatesDeleted, challengesDeleted, locksRemoved };
  }

  private async staleFileLocks(): Promise<number> {
    const { storage, logger } = this.opts;
    const now = this.now();
    let removed = 0;
    for (const key of await storage.list(LOCKS_PREFIX)) {
      if (!key.endsWith(LOCK_FILE_SUFFIX)) continue;
      const name = key.slice(LOCKS_PREFIX.length, -LOCK_FILE_SUFFIX.length);
      try {
        const raw = await storage.get(key);
        const expiresAt = raw ? (JSON.parse(raw.toString('utf8')) as { expiresAt?: unknown }).expiresAt : undefined;
        if (typeof expiresAt !== 'number' || expiresAt > now) continue;
        // Taking it over is only possible because it expired; releasing removes the file.
        const lock = await storage.tryLock(name, { ttlMs: 10_000 });
        if (!lock) continue;
        await lock.release();
        removed++;
      } catch (err) {
        logger.debug({ step: 'cleanup-locks', lock: name, err }, 'could not remove stale lock');
      }
    }
    if (removed > 0) logger.info({ step: 'cleanup-locks', removed }, 'stale lock files removed');
    return removed;
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
          const entry = await getJson<ExpiryEntry>(storage, key);
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
        if (this.opts.dnsProvider && key.startsWith(keys.dns01Prefix)) await removeLeftoverRecord(storage, this.opts.dnsProvider, key);
        else await storage.delete(key);
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
