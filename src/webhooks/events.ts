// What a webhook says, built from the events certgate already has (no second vocabulary):
//   1. the certificate lifecycle events (src/issuance/events.ts) but issuance-started, the
//      registry's changes (src/policy/registry.ts) and the maintainer's certificate-expiring;
//      WEBHOOK_EVENTS in the config schema must be exactly these (checked at compile time below)
//   2. the payload, per Standard Webhooks: `{ type, timestamp, data }`, `data` the event's fields
//   3. the webhook-id, derived from the event, so the same event gives the same id (retries keep
//      it, and certificate-expiring, found by whichever instance leads, is one message per
//      certificate and notAfter)
import { createHash } from 'node:crypto';
import type { WEBHOOK_EVENTS } from '../config/schema.ts';
import type { CertificateEvent, CertificateEventType } from '../issuance/events.ts';
import type { RegistryChange } from '../policy/registry.ts';

/** A webhook event type: one of the config's WEBHOOK_EVENTS. */
export type WebhookEventType = (typeof WEBHOOK_EVENTS)[number];

/** The vocabularies the webhook events come from (step 1). */
type SourceEventType = Exclude<CertificateEventType, 'issuance-started'> | RegistryChange['type'] | 'certificate-expiring';
// Both directions: a new lifecycle event type without a webhook (or a webhook type nobody emits)
// fails to compile here.
const sameVocabulary: [SourceEventType] extends [WebhookEventType] ? ([WebhookEventType] extends [SourceEventType] ? true : never) : never = true;
void sameVocabulary;

/** One event to deliver: its id (webhook-id), type, domain and the exact JSON body to sign and send. */
export interface WebhookMessage {
  /** `msg_<hex>`: the webhook-id header, the same on every retry. */
  readonly id: string;
  readonly type: WebhookEventType;
  readonly domain: string;
  /** `{ type, timestamp, data }` as sent (and signed). */
  readonly body: string;
}

/** A certificate nearing its notAfter with no successful renewal (found by the maintainer leader). */
export interface ExpiringCertificate {
  domain: string;
  ca: string;
  notAfter: string;
  fingerprint256: string;
}

/**
 * Step 3: the webhook-id of an event. `origin` tells apart two processes that emit the same type
 * for the same domain in the same millisecond; leave it empty for an event any instance may find
 * (certificate-expiring), so they all derive one id.
 */
export function webhookId(type: WebhookEventType, domain: string, at: string, origin: string): string {
  const hash = createHash('sha256').update(`${type}\n${domain}\n${at}\n${origin}`).digest('hex');
  // The spec forbids '.' in the id (it delimits the signed content); hex has none.
  return `msg_${hash.slice(0, 32)}`;
}

function message(type: WebhookEventType, domain: string, at: string, data: Record<string, unknown>, origin: string): WebhookMessage {
  return { id: webhookId(type, domain, at, origin), type, domain, body: JSON.stringify({ type, timestamp: at, data }) };
}

/** The message of a lifecycle event, or undefined for one no webhook carries (issuance-started). */
export function fromCertificateEvent(event: CertificateEvent, origin: string): WebhookMessage | undefined {
  if (event.type === 'issuance-started') return undefined;
  const { type, at, ...data } = event;
  return message(type, event.domain, at, data, origin);
}

/** The message of a registry change; `at` is when this instance heard it. */
export function fromRegistryChange(change: RegistryChange, at: string, origin: string): WebhookMessage {
  if (change.type === 'domain-bound') return message(change.type, change.name, at, { domain: change.name, binding: change.binding, created: change.created }, origin);
  return message(change.type, change.name, at, { domain: change.name }, origin);
}

/** The certificate-expiring message: one id per certificate and notAfter, whoever finds it. */
export function fromExpiring(cert: ExpiringCertificate, at: string): WebhookMessage {
  const id = webhookId('certificate-expiring', cert.domain, `${cert.notAfter}\n${cert.fingerprint256}`, '');
  return { id, type: 'certificate-expiring', domain: cert.domain, body: JSON.stringify({ type: 'certificate-expiring', timestamp: at, data: cert }) };
}
