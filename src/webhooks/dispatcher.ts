// The webhook dispatcher, one per gateway process (every instance, every worker, every role):
//   1. enqueue where the event happens: a certificate event fires only in the process that did
//      the work, a registry change is taken only where it was made (`local`), so each event is
//      filed once for the cluster: one delivery per subscribed endpoint (deliveries.ts)
//   2. claim: every pollMs each dispatcher lists the pending deliveries; one that is due is sent
//      by whoever takes its storage lock, after reading it again under the lock (another
//      instance may just have sent it). A delivery filed here is tried at once, a retry of ours
//      when its delay ends; the poll is for everything else (other instances', restarts).
//   3. send: POST of the stored body with the Standard Webhooks headers (signature.ts), no
//      redirects followed (undici's request() follows none), a time-out. 2xx: delivered.
//      Anything else: tried again after the next of `retry.delays`, with the same webhook-id;
//      none left: failed (GET /v1/webhooks/deliveries?status=failed lists it).
//   4. on the maintainer leader (leaderTask, at most hourly): certificate-expiring (expiring.ts)
//      and the retention sweep (delivered kept 7 days, failed 30)
// reconfigure() swaps the endpoints (SIGHUP): new events go to the new list; a pending delivery
// whose URL is no longer configured is marked failed at its next attempt.
import { randomUUID } from 'node:crypto';
import type { WebhookConfig } from '../config/schema.ts';
import type { CertificateEvents } from '../issuance/events.ts';
import type { RegistryChange } from '../policy/registry.ts';
import { HOUR_MS } from '../issuance/renewal-index.ts';
import { keys } from '../storage/keys.ts';
import { retryStorageErrors, type Storage } from '../storage/storage.ts';
import { forEachConcurrently } from '../util/concurrency.ts';
import type { Logger } from '../util/log.ts';
import { undici } from '../util/undici.ts';
import {
  deleteDelivery,
  deliveryIds,
  endpointId,
  enqueueDelivery,
  readDelivery,
  retryDelay,
  saveDelivery,
  type DeliveryRecord,
  type DeliveryStatus,
} from './deliveries.ts';
import { fromCertificateEvent, fromExpiring, fromRegistryChange, type WebhookMessage } from './events.ts';
import { findExpiring } from './expiring.ts';
import { webhookHeaders, webhookKey } from './signature.ts';

/** How long delivered and failed deliveries are kept before the leader's sweep removes them. */
export const DELIVERY_RETENTION_MS: Readonly<Record<Exclude<DeliveryStatus, 'pending'>, number>> = { delivered: 7 * 86_400_000, failed: 30 * 86_400_000 };

/** Enough for the time-out plus the storage writes around one attempt. */
const LOCK_TTL_MS = 30_000;
const PAGE = 500;
const CONCURRENCY = 8;

/** What a dispatcher works with; the durations are for tests (defaults: 1 s poll, 10 s time-out). */
export interface WebhookDispatcherOptions {
  storage: Storage;
  logger: Logger;
  /** The `webhooks` config section. */
  webhooks: readonly WebhookConfig[];
  pollMs?: number;
  timeoutMs?: number;
  now?: () => number;
}

interface Endpoint {
  readonly config: WebhookConfig;
  readonly key: Buffer;
}

type AttemptResult = { ok: true; status: number } | { ok: false; error: string; status?: number };

/** The dispatcher of the header: observe() the event sources, start(), and close() at shutdown. */
export class WebhookDispatcher {
  readonly #opts: WebhookDispatcherOptions;
  readonly #now: () => number;
  /** Tells apart the webhook-ids of events two processes emit in the same millisecond. */
  readonly #origin = randomUUID();
  #endpoints = new Map<string, Endpoint>();
  readonly #inflight = new Set<string>();
  readonly #work = new Set<Promise<unknown>>();
  readonly #timers = new Set<NodeJS.Timeout>();
  /** Due times of pending deliveries read lately, so a poll does not read a waiting one again. */
  readonly #dueAt = new Map<string, number>();
  readonly #stops: Array<() => void> = [];
  #poller: NodeJS.Timeout | undefined;
  #polling = false;
  #closed = false;

  constructor(opts: WebhookDispatcherOptions) {
    this.#opts = opts;
    this.#now = opts.now ?? Date.now;
    this.reconfigure(opts.webhooks);
  }

  /** The configured endpoints (by endpoint id); none: events are not even filed. */
  get endpoints(): number {
    return this.#endpoints.size;
  }

  /** Replaces the endpoints (`webhooks` after a reload); takes effect for the next event and attempt. */
  reconfigure(webhooks: readonly WebhookConfig[]): void {
    this.#endpoints = new Map(webhooks.map((config) => [endpointId(config.url), { config, key: webhookKey(config.secret) }]));
  }

  /** Step 1: files this process's certificate events and this instance's registry changes. */
  observe(events: Pick<CertificateEvents, 'on'>, registry: { onChange(listener: (change: RegistryChange) => void): () => void }): void {
    this.#stops.push(events.on((event) => this.#file(fromCertificateEvent(event, this.#origin))));
    this.#stops.push(registry.onChange((change) => change.local && this.#file(fromRegistryChange(change, new Date(this.#now()).toISOString(), this.#origin))));
  }

  /** Starts the poll (step 2). */
  start(): void {
    this.#poller = setInterval(() => void this.#track(this.poll()), this.#opts.pollMs ?? 1000);
    this.#poller.unref();
  }

  /** Stops observing and polling, and waits for the filing and sending under way. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const stop of this.#stops.splice(0)) stop();
    clearInterval(this.#poller);
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    while (this.#work.size) await Promise.allSettled([...this.#work]);
  }

  /**
   * Files `message` for every endpoint subscribed to its type (step 1); resolves once stored.
   * Storage trouble is ridden out for 30 s, then logged with the domain (the event is lost).
   */
  async publish(message: WebhookMessage): Promise<void> {
    const { storage, logger } = this.#opts;
    for (const { config } of this.#endpoints.values()) {
      if (!config.events.includes(message.type)) continue;
      try {
        const filed = await retryStorageErrors(() => enqueueDelivery(storage, message, config.url, this.#now()), { budgetMs: 30_000, initialDelayMs: 250, maxDelayMs: 5000 });
        if (filed && !this.#closed) void this.#track(this.#attempt(`${message.id}-${endpointId(config.url)}`));
      } catch (err) {
        logger.error({ domain: message.domain, step: 'webhook-enqueue', event: message.type, webhookId: message.id, url: config.url, err }, 'could not file a webhook delivery');
      }
    }
  }

  /** Step 2: one pass over the pending deliveries, sending the due ones this instance can claim. */
  async poll(): Promise<void> {
    // No endpoint here: nothing to send (and no storage read every pollMs for it).
    if (this.#polling || this.#closed || this.#endpoints.size === 0) return;
    this.#polling = true;
    try {
      const listed = new Set<string>();
      let after: string | undefined;
      for (;;) {
        const ids = await deliveryIds(this.#opts.storage, 'pending', { ...(after ? { after } : {}), limit: PAGE });
        ids.forEach((id) => listed.add(id));
        const due = ids.filter((id) => !this.#inflight.has(id) && (this.#dueAt.get(id) ?? 0) <= this.#now());
        await forEachConcurrently(due, CONCURRENCY, (id) => this.#attempt(id));
        if (ids.length < PAGE) break;
        after = ids[ids.length - 1];
      }
      for (const id of this.#dueAt.keys()) if (!listed.has(id)) this.#dueAt.delete(id);
    } catch (err) {
      this.#opts.logger.warn({ step: 'webhook-poll', err }, 'could not list pending webhook deliveries');
    } finally {
      this.#polling = false;
    }
  }

  /**
   * Step 4, for the maintainer leader each pass: at most hourly (the last run is kept in
   * storage, so a new leader does not repeat it), files certificate-expiring for each expiring
   * certificate (once per certificate and notAfter) and removes old delivered and failed deliveries.
   */
  async leaderTask(): Promise<void> {
    const { storage } = this.#opts;
    const now = this.#now();
    const last = Number((await storage.get(keys.webhookExpiringScan))?.toString('utf8'));
    if (Number.isFinite(last) && now - last < HOUR_MS) return;
    await storage.put(keys.webhookExpiringScan, String(now));
    if (this.#endpoints.size > 0) {
      const at = new Date(now).toISOString();
      for (const cert of await findExpiring(storage, now)) await this.publish(fromExpiring(cert, at));
    }
    await this.#sweep('delivered', now);
    await this.#sweep('failed', now);
  }

  #file(message: WebhookMessage | undefined | false): void {
    if (message && !this.#closed && this.#endpoints.size > 0) void this.#track(this.publish(message));
  }

  #track<T>(work: Promise<T>): Promise<T> {
    this.#work.add(work);
    void work.finally(() => this.#work.delete(work)).catch(() => undefined);
    return work;
  }

  /** Steps 2-3 for one delivery: claim, read again, send, record the outcome. */
  async #attempt(id: string): Promise<void> {
    if (this.#inflight.has(id) || this.#closed) return;
    this.#inflight.add(id);
    const { storage, logger } = this.#opts;
    try {
      const lock = await storage.tryLock(keys.webhookDeliveryLock(id), { ttlMs: LOCK_TTL_MS });
      if (!lock) return;
      try {
        const record = await readDelivery(storage, id);
        if (record?.status !== 'pending') {
          // Sent (or removed) since it was listed: the index entry is stale.
          this.#dueAt.delete(id);
          if (record) await storage.delete(keys.webhookStatus('pending', id));
          return;
        }
        const due = Date.parse(record.nextAttemptAt ?? record.createdAt);
        if (due > this.#now()) return this.#retryAt(id, due);
        await this.#send(record);
      } finally {
        await lock.release().catch(() => undefined);
      }
    } catch (err) {
      logger.warn({ step: 'webhook-deliver', delivery: id, err }, 'webhook delivery attempt could not be recorded; tried again later');
    } finally {
      this.#inflight.delete(id);
    }
  }

  /** Step 3: one POST and its outcome, written back to storage. */
  async #send(record: DeliveryRecord): Promise<void> {
    const endpoint = this.#endpoints.get(record.endpoint);
    const result: AttemptResult = endpoint ? await this.#post(record, endpoint) : { ok: false, error: `webhook ${record.url} is no longer configured` };
    const now = this.#now();
    const at = new Date(now).toISOString();
    const next: DeliveryRecord = { ...record, attempts: record.attempts + 1, updatedAt: at };
    delete next.nextAttemptAt;
    const delay = endpoint && !result.ok ? retryDelay(next.attempts, endpoint.config.retry.delays) : undefined;
    if (result.ok) {
      next.status = 'delivered';
      next.deliveredAt = at;
    } else {
      next.lastError = { at, error: result.error, ...(result.status !== undefined ? { status: result.status } : {}) };
      if (delay === undefined) next.status = 'failed';
      else next.nextAttemptAt = new Date(now + delay).toISOString();
    }
    await saveDelivery(this.#opts.storage, next, 'pending');
    const fields = { domain: record.domain, step: 'webhook-deliver', event: record.type, webhookId: record.webhookId, url: record.url, attempt: next.attempts };
    if (result.ok) this.#opts.logger.info({ ...fields, status: result.status }, 'webhook delivered');
    else if (next.status === 'failed') this.#opts.logger.error({ ...fields, err: result.error }, 'webhook delivery failed for good: no retries left');
    else this.#opts.logger.warn({ ...fields, err: result.error, retryInMs: delay }, 'webhook delivery failed; will retry');
    if (next.status === 'pending') this.#retryAt(record.id, now + delay!);
    else this.#dueAt.delete(record.id);
  }

  async #post(record: DeliveryRecord, endpoint: Endpoint): Promise<AttemptResult> {
    const timeoutMs = this.#opts.timeoutMs ?? 10_000;
    try {
      // undici's request() never follows redirects: a 3xx is an answer, and not a 2xx.
      const res = await undici().request(record.url, {
        method: 'POST',
        body: record.body,
        headers: { 'content-type': 'application/json', 'user-agent': 'certgate-webhooks/0.1', ...webhookHeaders(endpoint.key, record.webhookId, record.body, this.#now()) },
        signal: AbortSignal.timeout(timeoutMs),
      });
      await res.body.dump();
      if (res.statusCode >= 200 && res.statusCode < 300) return { ok: true, status: res.statusCode };
      const redirect = res.statusCode >= 300 && res.statusCode < 400 ? ' (redirects are not followed: configure the final URL)' : '';
      return { ok: false, status: res.statusCode, error: `answered ${res.statusCode}${redirect}` };
    } catch (err) {
      const e = err as Error & { code?: string };
      const timedOut = e.name === 'TimeoutError' || e.name === 'AbortError';
      return { ok: false, error: timedOut ? `no answer within ${timeoutMs} ms` : `connection failed: ${e.code ?? e.message}` };
    }
  }

  /** A retry of ours is tried when due, not at the next poll; the poll still covers a restart. */
  #retryAt(id: string, due: number): void {
    this.#dueAt.set(id, due);
    if (this.#closed) return;
    const timer = setTimeout(
      () => {
        this.#timers.delete(timer);
        void this.#track(this.#attempt(id));
      },
      Math.max(0, due - this.#now()),
    );
    timer.unref();
    this.#timers.add(timer);
  }

  /** Removes delivered or failed deliveries older than DELIVERY_RETENTION_MS (step 4). */
  async #sweep(status: 'delivered' | 'failed', now: number): Promise<void> {
    const { storage } = this.#opts;
    let after: string | undefined;
    for (;;) {
      const ids = await deliveryIds(storage, status, { ...(after ? { after } : {}), limit: PAGE });
      for (const id of ids) {
        const since = Date.parse((await storage.get(keys.webhookStatus(status, id)))?.toString('utf8') ?? '');
        if (!Number.isFinite(since) || now - since > DELIVERY_RETENTION_MS[status]) await deleteDelivery(storage, id, status);
      }
      if (ids.length < PAGE) return;
      after = ids[ids.length - 1];
    }
  }
}
