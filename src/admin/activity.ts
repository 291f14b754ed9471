// What the dashboard shows besides bindings and certificates: a name's recent events and the
// issuances and failures per hour (GET /v1/events/recent, GET /v1/stats).
//
//   1. every event the admin API streams (certificate events from every instance through the
//      bus, binding changes) is also recorded here, in memory
//   2. the last `capacity` events are kept (a ring): a hostname page filters them by name
//   3. per UTC hour, issuances, renewals and failures are counted for the last `hours` hours
//
// Memory only, on purpose: bounded (a few MB at the default capacity), no storage write on the
// issuance path, and cheap at 100,000 names. The price: history starts when this admin API
// started (`since` says when), which the answers carry so the dashboard can say so.
import { HOUR_MS, hourBucket } from '../issuance/renewal-index.ts';

/** One recorded event: its SSE type, the name it is about, when, and its fields as streamed. */
export interface ActivityEvent {
  type: string;
  domain: string;
  at: string;
  data: Record<string, unknown>;
}

/** Issuances (first and renewals) and failures in one UTC hour (`hour` like 2026-11-23T18). */
export interface HourCounts {
  hour: string;
  issued: number;
  renewed: number;
  failed: number;
}

/** Bounds of an Activity; the defaults suit the admin API. */
export interface ActivityOptions {
  /** Events kept for hostname pages; default 5,000. */
  capacity?: number;
  /** Hours of counts kept; default 72. */
  hours?: number;
  now?: () => number;
}

/**
 * The recent events and hourly counts of the header. `record` never throws on an unknown event
 * type (it is kept, and counted only when it is an issuance, renewal or failure).
 */
export class Activity {
  readonly #ring: Array<ActivityEvent | undefined>;
  #next = 0;
  readonly #counts = new Map<string, HourCounts>();
  readonly #hours: number;
  readonly #now: () => number;
  /** When recording started (ISO 8601): counts and events before it are not known. */
  readonly since: string;

  constructor(opts: ActivityOptions = {}) {
    this.#ring = new Array<ActivityEvent | undefined>(opts.capacity ?? 5000);
    this.#hours = opts.hours ?? 72;
    this.#now = opts.now ?? Date.now;
    this.since = new Date(this.#now()).toISOString();
  }

  /** Step 1: one streamed event; `data` carries `domain` (certificate events) or `name` (bindings). */
  record(type: string, data: Record<string, unknown>): void {
    const domain = typeof data.domain === 'string' ? data.domain : typeof data.name === 'string' ? data.name : '';
    const at = typeof data.at === 'string' ? data.at : new Date(this.#now()).toISOString();
    // Step 2: the ring overwrites the oldest event.
    this.#ring[this.#next] = { type, domain, at, data };
    this.#next = (this.#next + 1) % this.#ring.length;
    // Step 3.
    const field = type === 'issuance-succeeded' ? 'issued' : type === 'renewed' ? 'renewed' : type === 'issuance-failed' ? 'failed' : undefined;
    if (!field) return;
    const hour = hourBucket(Date.parse(at) || this.#now());
    const counts = this.#counts.get(hour) ?? { hour, issued: 0, renewed: 0, failed: 0 };
    counts[field]++;
    this.#counts.set(hour, counts);
    if (this.#counts.size > this.#hours) this.#prune();
  }

  /** The newest events first, at most `limit`; only `domain`'s when given. */
  recent(domain: string | undefined, limit: number): ActivityEvent[] {
    const out: ActivityEvent[] = [];
    const size = this.#ring.length;
    for (let i = 1; i <= size && out.length < limit; i++) {
      const event = this.#ring[(this.#next - i + size) % size];
      if (!event) break;
      if (domain === undefined || event.domain === domain) out.push(event);
    }
    return out;
  }

  /** The last `hours` UTC hours, oldest first, with zeros for hours without events. */
  perHour(hours = 48): HourCounts[] {
    const now = this.#now();
    const out: HourCounts[] = [];
    for (let i = hours - 1; i >= 0; i--) {
      const hour = hourBucket(now - i * HOUR_MS);
      out.push(this.#counts.get(hour) ?? { hour, issued: 0, renewed: 0, failed: 0 });
    }
    return out;
  }

  #prune(): void {
    const oldest = hourBucket(this.#now() - this.#hours * HOUR_MS);
    for (const hour of this.#counts.keys()) if (hour < oldest) this.#counts.delete(hour);
  }
}
