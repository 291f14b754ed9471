// The admin API's answers as the dashboard reads them. Fields another part of the API may not
// send yet (the lifecycle `status` values, `enabled`, `errors`, `verification`) are optional: the
// dashboard shows what is there and leaves out what is not.

/** Lifecycle statuses a binding may report (GET /v1/domains); an older API reports active|disabled. */
export const STATUSES = ['pending', 'active', 'failed', 'blocked', 'disabled'] as const;

/** One item of GET /v1/domains, or GET /v1/domains/{name}. */
export interface DomainItem {
  name: string;
  status?: string;
  enabled?: boolean;
  upstream?: string;
  tenant?: string;
  label?: string;
  createdAt?: string;
  updatedAt?: string;
  errors?: string[];
  verification?: Record<string, unknown>;
}

/** A page of GET /v1/domains. */
export interface DomainPage {
  items: DomainItem[];
  nextCursor: string | null;
}

/** The failures part of a certificate answer (found or not). */
export interface Failures {
  attempts?: number;
  lastError?: { at: string; step: string | null; error: string } | null;
  nextRetryAt?: string | null;
  givenUp?: boolean;
}

/** GET /v1/certificates/{name} (200). */
export interface Certificate extends Failures {
  domain: string;
  ca: string;
  issuer: string | null;
  names: string[];
  serialNumber: string;
  fingerprint256: string;
  keyType: string;
  notBefore: string;
  notAfter: string;
  obtainedAt: string;
  nextRenewal: string | null;
  cached: boolean;
}

/** One event of GET /v1/events/recent. */
export interface RecentEvent {
  type: string;
  domain: string;
  at: string;
  data: Record<string, unknown>;
}

/** GET /v1/stats. */
export interface Stats {
  expiringPerDay: Array<{ day: string; count: number }>;
  perHour: Array<{ hour: string; issued: number; renewed: number; failed: number }>;
  since: string;
}

/** Whether a binding is switched on: `enabled` when the API sends it, else its old on/off status. */
export function isEnabled(item: DomainItem): boolean {
  return item.enabled ?? item.status !== 'disabled';
}
