// Certificates expiring per UTC day over the next days, for the dashboard's chart (GET /v1/stats).
//
//   1. one listing of the expiry index's keys (`index/expiry/<hour>/<domain>`, written at every
//      save: src/issuance/renewal-index.ts): keys only, no value is read
//   2. a renewed certificate leaves its predecessor's entry behind until cleanup reaches it, so
//      each name counts once, in the latest hour it is filed under (its newest certificate)
//   3. counted per UTC day from today; the answer is kept for `ttlMs` and concurrent callers
//      share one listing, so a dashboard left open costs one listing a minute at most
//
// At 100,000 certificates that is one listing of ~100-200k short keys a minute while someone
// looks, instead of reading 100k meta files. Known limit: a deleted certificate's entry stays in
// the index until it expires, so it is still counted until then.
import { HOUR_MS, hourStart } from '../issuance/renewal-index.ts';
import { keys } from '../storage/keys.ts';
import type { Storage } from '../storage/storage.ts';

const PREFIX = keys.expiryIndexPrefix;
const DAY_MS = 24 * HOUR_MS;

/** How many certificates expire on one UTC day (`day` like 2026-11-23). */
export interface DayCount {
  day: string;
  count: number;
}

/**
 * The per-day counts of the header, cached for `ttlMs` (default 60 s). A storage failure
 * rejects (the caller answers 503); the next call lists again.
 */
export class ExpiryStats {
  readonly #storage: Pick<Storage, 'list'>;
  readonly #ttlMs: number;
  readonly #now: () => number;
  #cached: { at: number; days: number; value: Promise<DayCount[]> } | undefined;

  constructor(storage: Pick<Storage, 'list'>, opts: { ttlMs?: number; now?: () => number } = {}) {
    this.#storage = storage;
    this.#ttlMs = opts.ttlMs ?? 60_000;
    this.#now = opts.now ?? Date.now;
  }

  /** `days` entries from today (UTC), oldest first, zeros included. */
  perDay(days = 90): Promise<DayCount[]> {
    const now = this.#now();
    const cached = this.#cached;
    if (cached && cached.days === days && now - cached.at < this.#ttlMs) return cached.value;
    const value = this.#count(now, days);
    this.#cached = { at: now, days, value };
    value.catch(() => {
      if (this.#cached?.value === value) this.#cached = undefined;
    });
    return value;
  }

  async #count(now: number, days: number): Promise<DayCount[]> {
    // Step 1.
    const latest = new Map<string, string>();
    for (const key of await this.#storage.list(PREFIX)) {
      const rest = key.slice(PREFIX.length);
      const slash = rest.indexOf('/');
      if (slash < 0) continue;
      const hour = rest.slice(0, slash);
      const domain = rest.slice(slash + 1);
      // Step 2: ISO hours sort as strings.
      const seen = latest.get(domain);
      if (seen === undefined || hour > seen) latest.set(domain, hour);
    }
    // Step 3.
    const today = Math.floor(now / DAY_MS) * DAY_MS;
    const counts = Array.from({ length: days }, (_, i) => ({ day: new Date(today + i * DAY_MS).toISOString().slice(0, 10), count: 0 }));
    for (const hour of latest.values()) {
      const index = Math.floor((hourStart(hour) - today) / DAY_MS);
      if (index >= 0 && index < days) counts[index]!.count++;
    }
    return counts;
  }
}
