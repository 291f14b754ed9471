// Webhook deliveries in storage, shared by every instance (keys in src/storage/keys.ts):
//   1. a record per message and endpoint, `webhooks/deliveries/<id>`, id `<webhook-id>-<endpoint>`
//   2. a status index, `webhooks/<status>/<id>`, so a dispatcher lists only what is pending and
//      the admin API only what it is asked for. A status change writes the record first, then the
//      new index entry, then removes the old one: an index entry whose record says otherwise is
//      stale and dropped by whoever reads it.
//   3. the retry schedule: after attempt n fails, wait delays[n-1]; with no delay left, failed
import { createHash } from 'node:crypto';
import { keys } from '../storage/keys.ts';
import { getJson, type Storage } from '../storage/storage.ts';
import type { WebhookEventType, WebhookMessage } from './events.ts';

/** Where a delivery stands: being tried (pending), got a 2xx (delivered), or out of retries (failed). */
export const DELIVERY_STATUSES = ['pending', 'delivered', 'failed'] as const;
/** One of DELIVERY_STATUSES. */
export type DeliveryStatus = (typeof DELIVERY_STATUSES)[number];

/** One message to one endpoint, as stored (step 1) and listed by the admin API (without `body`). */
export interface DeliveryRecord {
  /** `<webhookId>-<endpoint>`. */
  id: string;
  /** The webhook-id header: the same on every attempt. */
  webhookId: string;
  /** The endpoint: a hash of its URL (endpointId). */
  endpoint: string;
  url: string;
  type: WebhookEventType;
  domain: string;
  /** The JSON body, exactly as signed and sent. */
  body: string;
  status: DeliveryStatus;
  /** Attempts made so far. */
  attempts: number;
  createdAt: string;
  updatedAt: string;
  /** When the next attempt is due (pending only). */
  nextAttemptAt?: string;
  deliveredAt?: string;
  /** The last failed attempt: the HTTP status, or the time-out or connection error. */
  lastError?: { at: string; error: string; status?: number };
}

/** The endpoint id of a webhook URL: 16 hex digits of its SHA-256 (stable across restarts and reloads). */
export function endpointId(url: string): string {
  return createHash('sha256').update(url).digest('hex').slice(0, 16);
}

/**
 * Step 3: how long to wait after `attempts` failed attempts, or undefined when the delivery is
 * out of retries (then failed). One first attempt plus one per delay.
 */
export function retryDelay(attempts: number, delays: readonly number[]): number | undefined {
  return attempts >= 1 ? delays[attempts - 1] : 0;
}

/** The stored record, or null when there is none (or it does not parse). */
export function readDelivery(storage: Storage, id: string): Promise<DeliveryRecord | null> {
  return getJson<DeliveryRecord>(storage, keys.webhookDelivery(id));
}

/**
 * Files a new pending delivery of `message` to `url`, due now. Returns false (and writes nothing)
 * when a delivery with that id exists already: a message found again (certificate-expiring on the
 * next scan, or by a new leader) is not sent twice.
 */
export async function enqueueDelivery(storage: Storage, message: WebhookMessage, url: string, now: number): Promise<boolean> {
  const endpoint = endpointId(url);
  const id = `${message.id}-${endpoint}`;
  if (await storage.get(keys.webhookDelivery(id))) return false;
  const at = new Date(now).toISOString();
  const record: DeliveryRecord = {
    ...{ id, webhookId: message.id, endpoint, url, type: message.type, domain: message.domain, body: message.body },
    ...{ status: 'pending', attempts: 0, createdAt: at, updatedAt: at, nextAttemptAt: at },
  };
  await storage.put(keys.webhookDelivery(id), JSON.stringify(record));
  await storage.put(keys.webhookStatus('pending', id), at);
  return true;
}

/** Step 2: writes `record` (its status already changed from `from`) and moves its index entry. */
export async function saveDelivery(storage: Storage, record: DeliveryRecord, from: DeliveryStatus): Promise<void> {
  await storage.put(keys.webhookDelivery(record.id), JSON.stringify(record));
  if (record.status === from) return;
  await storage.put(keys.webhookStatus(record.status, record.id), record.updatedAt);
  await storage.delete(keys.webhookStatus(from, record.id));
}

/** Removes a delivery and its index entry (the retention sweep). */
export async function deleteDelivery(storage: Storage, id: string, status: DeliveryStatus): Promise<void> {
  await storage.delete(keys.webhookDelivery(id));
  await storage.delete(keys.webhookStatus(status, id));
}

/** One page of the delivery ids in `status`, in id order; `after` is the last id of the previous page. */
export async function deliveryIds(storage: Storage, status: DeliveryStatus, opts: { after?: string; limit: number }): Promise<string[]> {
  const prefix = keys.webhookStatusPrefix(status);
  const found = await storage.list(prefix, { ...(opts.after ? { after: prefix + opts.after } : {}), limit: opts.limit });
  return found.map((key) => key.slice(prefix.length));
}

/** A delivery as the admin API shows it: the record without its body. */
export type DeliverySummary = Omit<DeliveryRecord, 'body'>;

/**
 * One page of deliveries (the admin API's `GET /v1/webhooks/deliveries`): those in `status`, or
 * every one without it; `nextCursor` is the `cursor` of the next page (null at the end). Index
 * entries whose record has since moved on are left out (step 2).
 */
export async function listDeliveries(storage: Storage, opts: { status?: DeliveryStatus; cursor?: string; limit: number }): Promise<{ items: DeliverySummary[]; nextCursor: string | null }> {
  let ids: string[];
  if (opts.status) {
    ids = await deliveryIds(storage, opts.status, { ...(opts.cursor ? { after: opts.cursor } : {}), limit: opts.limit });
  } else {
    const prefix = keys.webhookDeliveriesPrefix;
    ids = (await storage.list(prefix, { ...(opts.cursor ? { after: prefix + opts.cursor } : {}), limit: opts.limit })).map((key) => key.slice(prefix.length));
  }
  const records = await Promise.all(ids.map((id) => readDelivery(storage, id)));
  const items = records.filter((r): r is DeliveryRecord => r !== null && (opts.status === undefined || r.status === opts.status)).map(({ body: _body, ...summary }) => summary);
  const last = ids[ids.length - 1];
  return { items, nextCursor: ids.length === opts.limit && last !== undefined ? last : null };
}
