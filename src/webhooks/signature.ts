// Signing per the Standard Webhooks spec (symmetric scheme, https://www.standardwebhooks.com):
//   1. the secret `whsec_<base64>` is the base64 of the HMAC key (the config schema checks it)
//   2. the signed content is `${webhook-id}.${webhook-timestamp}.${body}`, the body exactly as sent
//   3. `webhook-signature: v1,<base64 HMAC-SHA256>`; `webhook-timestamp` is whole seconds since
//      the epoch of this attempt (a retry signs again with its own time, the id stays)
import { createHmac } from 'node:crypto';

const SECRET_PREFIX = 'whsec_';

/**
 * The HMAC key of a `whsec_<base64>` secret (step 1). Throws when the prefix is missing; the
 * config schema has already refused anything else that is not base64 of 24 to 64 bytes.
 */
export function webhookKey(secret: string): Buffer {
  if (!secret.startsWith(SECRET_PREFIX)) throw new Error(`webhook secret must start with ${SECRET_PREFIX} (Standard Webhooks)`);
  return Buffer.from(secret.slice(SECRET_PREFIX.length), 'base64');
}

/** `v1,<base64 HMAC-SHA256 of "id.timestamp.body">` (steps 2-3); `timestamp` in seconds. */
export function signWebhook(key: Buffer, id: string, timestamp: number, body: string): string {
  const mac = createHmac('sha256', key).update(`${id}.${timestamp}.${body}`, 'utf8').digest('base64');
  return `v1,${mac}`;
}

/** The three Standard Webhooks headers of one attempt at `nowMs`. */
export function webhookHeaders(key: Buffer, id: string, body: string, nowMs: number): { 'webhook-id': string; 'webhook-timestamp': string; 'webhook-signature': string } {
  const timestamp = Math.floor(nowMs / 1000);
  return { 'webhook-id': id, 'webhook-timestamp': String(timestamp), 'webhook-signature': signWebhook(key, id, timestamp, body) };
}
