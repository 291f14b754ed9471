// Which names certainly have no stored certificate, so an on-demand attempt for a random name
// (a flood) costs no storage read before the gates refuse it (manager.ts, step 3).
//   1. Per process, a growing Bloom filter (util/bloom.ts): ~10-20 bits per stored name, no
//      false negatives for what it was told, false positives (a storage read, as before) at ~1%.
//   2. Filled in the background once the gateway listens (start()), from one listing: the
//      expiry index (`index/expiry/<hour>/<domain>`: one entry per certificate stored since the
//      index exists, a directory per hour on file storage) once the maintainer's backfill marker
//      says every older certificate is in it too; else every `certificates/<ca>/<domain>/cert.pem`.
//      An expired certificate is never served, so one missing from the expiry index after
//      cleanup is not missed. Until the first fill completes, every name "may be stored".
//   3. Told of every certificate this process stores (manager.ts, step 7) and every one another
//      process announces on the bus (tls/cache-sync.ts; `certgate import` announces on Redis).
//      The bus is at most once: after a reconnect, and every `refillEveryMs` (for writers no bus
//      reaches, e.g. `certgate import` into file storage while a gateway runs), it is filled
//      again from a new listing, in the background; the old filter answers meanwhile, and names
//      added meanwhile go into both.
//   4. A false negative (a certificate stored by a writer not heard of yet) never costs an order:
//      an approved name is looked up in storage again under its lock before any order (step 5),
//      and a name the gates refuse (policy or abuse limits) is read after the refusal (the
//      manager's storedAfterDenial; tls/early-refusal.ts reads before its alert), so a stored
//      certificate is served whatever the client's limits say.
//   5. Deleted names stay in the filter (a Bloom filter cannot forget): a storage read, as before.
import { GrowingBloomFilter } from '../util/bloom.ts';
import type { Logger } from '../util/log.ts';
import { keys } from '../storage/keys.ts';
import type { Storage } from '../storage/storage.ts';

/** The false-positive rate the filter is sized for (below 2× this as it grows). */
const FALSE_POSITIVE_RATE = 0.01;
/** Names added between two yields to the event loop while filling. */
const FILL_CHUNK = 4_096;

/** Options of StoredNames. */
export interface StoredNamesOptions {
  storage: Storage;
  logger: Logger;
  /** How often the filter is filled again from a listing (step 3); default 15 minutes. */
  refillEveryMs?: number;
}

/** The filter of the header; one per process, shared by the manager and cache sync. */
export class StoredNames {
  private current: GrowingBloomFilter | undefined;
  private pending: GrowingBloomFilter | undefined;
  private filling: Promise<void> | undefined;
  private again = false;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  /** See StoredNamesOptions. */
  constructor(private readonly opts: StoredNamesOptions) {}

  /** Whether a first fill completed: until then mightBeStored() is always true. */
  get complete(): boolean {
    return this.current !== undefined;
  }

  /** The memory the filter's bits take, in bytes (0 before the first fill). */
  get bytes(): number {
    return (this.current?.bytes ?? 0) + (this.pending?.bytes ?? 0);
  }

  /**
   * false only when no certificate is stored for `domain` as far as this process knows (step 4:
   * a writer not heard of yet may have stored one); true when one may be, or before the first fill.
   */
  mightBeStored(domain: string): boolean {
    return this.current === undefined || this.current.has(domain);
  }

  /** A certificate for `domain` was stored (by this process or, per the bus, another). */
  add(domain: string): void {
    this.current?.add(domain);
    this.pending?.add(domain);
  }

  /** Starts the first fill and the periodic ones, in the background (call once the gateway listens). */
  start(): void {
    if (this.closed || this.timer) return;
    void this.refill();
    this.timer = setInterval(() => void this.refill(), this.opts.refillEveryMs ?? 15 * 60_000);
    this.timer.unref();
  }

  /**
   * Fills a new filter from a listing and puts it in place; one fill at a time (a call during a
   * fill runs one more after it). Never rejects: a failed listing is logged and the filter kept.
   */
  refill(): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.filling) {
      this.again = true;
      return this.filling;
    }
    this.filling = this.fillOnce().finally(() => {
      this.filling = undefined;
      if (this.again && !this.closed) {
        this.again = false;
        void this.refill();
      }
    });
    return this.filling;
  }

  /** Stops the periodic fills; a fill under way finishes unused. */
  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    this.pending = undefined;
  }

  private async fillOnce(): Promise<void> {
    const { logger } = this.opts;
    const started = performance.now();
    try {
      const { names, source } = await this.listStored();
      const filter = new GrowingBloomFilter(Math.max(1_024, names.length * 1.25), FALSE_POSITIVE_RATE);
      this.pending = filter;
      for (let i = 0; i < names.length; i++) {
        filter.add(names[i]!);
        if (i % FILL_CHUNK === FILL_CHUNK - 1) await new Promise<void>((resolve) => setImmediate(resolve));
      }
      if (this.closed) return;
      this.current = filter;
      this.pending = undefined;
      logger.debug({ step: 'stored-names', names: names.length, source, bytes: filter.bytes, ms: Math.round(performance.now() - started) }, 'stored names listed');
    } catch (err) {
      this.pending = undefined;
      logger.warn({ step: 'stored-names', err }, 'could not list stored names; every name is looked up in storage until the next fill');
    }
  }

  /** Step 2: every name a usable certificate may be stored under. */
  private async listStored(): Promise<{ names: string[]; source: string }> {
    const { storage } = this.opts;
    if (await storage.get(keys.indexBackfilled)) {
      const prefix = keys.expiryIndexPrefix;
      // index/expiry/<hour>/<domain>
      const names = (await storage.list(prefix)).map((key) => key.slice(key.indexOf('/', prefix.length) + 1));
      return { names, source: 'expiry-index' };
    }
    // certificates/<ca>/<domain>/cert.pem
    const names = (await storage.list('certificates/')).filter((key) => key.endsWith('/cert.pem')).map((key) => key.split('/')[2]!);
    return { names, source: 'certificates' };
  }
}
