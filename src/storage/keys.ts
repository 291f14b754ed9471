// What stored keys mean, in one place, so a human reading the tree and the code agree. Two
// parts: the key of everything certgate stores (`keys`, below), and the rules every backend
// applies to a key before it touches it (valid path, no internal name, `locks/` reserved), so
// a key one backend accepts the other accepts too and data can be migrated either way.
//
// Stored data:
//   certificates/<ca>/<domain>/{cert.pem,key.pem,meta.json}
//                                        a managed certificate (config `certificates`) is stored
//                                        here under its entry's first name (`*.x` kept as is) and
//                                        found by that name; meta.json `names` lists all its names
//   accounts/<ca>/<email or "default">/{key.pem,account.json}
//   challenges/http-01/<token>, challenges/tls-alpn-01/<domain>/{cert.pem,key.pem}
//   challenges/dns-01/<fqdn>/<value>    a TXT value presented through the DNS provider, until cleaned up
//   fallback/{cert.pem,key.pem}
//   tls/ticket-secret (shared TLS session ticket key material)
//   locks/<name>.lock                      held locks (reserved: read-only through the Storage API)
//   index/renewal/<UTC hour>/<domain>   when the maintainer next looks at a certificate (src/maintain/)
//   index/expiry/<UTC hour>/<domain>    when a certificate expires, for cleanup
//   index/renewal-cursor, index/expiry-cursor, index/backfilled-v1   the maintainer's bookmarks
//   retry/names/<domain>, retry/cas/<ca>   backoff after failures, CA pauses (src/issuance/backoff.ts)
//   budgets/<ca>/<budget>/<scope>          rate-limit budget logs (src/policy/budgets.ts)
//   preflight/<token>                      pre-flight probe answers (src/policy/preflight.ts)
//   registry/domains/<domain>              domain bindings (src/policy/registry.ts)
//   registry/ownership-pending/<domain>    bindings whose ownership TXT record was not seen yet
//   webhooks/deliveries/<delivery id>      one webhook delivery (src/webhooks/deliveries.ts): the signed
//                                        body, its endpoint, status, attempts, last error, next attempt;
//                                        the id is `<webhook-id>-<endpoint id>`, the same on every retry
//   webhooks/{pending,delivered,failed}/<delivery id>   the deliveries in that status (value: when
//                                        it got there), so the dispatchers and the admin API list one status
//   webhooks/expiring-scan                 when the leader last looked for certificate-expiring
import { StorageError } from './storage.ts';

/** A storage-safe id for a CA, from its directory URL: `acme-v02.api.letsencrypt.org-directory`. */
export function caIdFromDirectory(directoryUrl: string): string {
  const u = new URL(directoryUrl);
  const parts = [u.hostname.replace(/[^a-zA-Z0-9.-]/g, '_')];
  if (u.port) parts.push(u.port);
  for (const seg of u.pathname.split('/')) if (seg) parts.push(seg.replace(/[^a-zA-Z0-9._-]/g, '_'));
  return parts.join('-').toLowerCase();
}

/**
 * The storage key of everything certgate stores; build keys only through these, so the layout
 * above stays true. `*Lock` entries are lock names (for Storage.lock), not storage keys.
 */
export const keys = {
  certificateDir: (ca: string, domain: string) => `certificates/${ca}/${domain}`,
  certificate: (ca: string, domain: string) => `certificates/${ca}/${domain}/cert.pem`,
  certificateKey: (ca: string, domain: string) => `certificates/${ca}/${domain}/key.pem`,
  certificateMeta: (ca: string, domain: string) => `certificates/${ca}/${domain}/meta.json`,
  accountKey: (ca: string, email: string | undefined) => `accounts/${ca}/${email ?? 'default'}/key.pem`,
  account: (ca: string, email: string | undefined) => `accounts/${ca}/${email ?? 'default'}/account.json`,
  http01Token: (token: string) => `challenges/http-01/${token}`,
  tlsAlpnCert: (domain: string) => `challenges/tls-alpn-01/${domain}/cert.pem`,
  tlsAlpnKey: (domain: string) => `challenges/tls-alpn-01/${domain}/key.pem`,
  dns01Record: (fqdn: string, value: string) => `challenges/dns-01/${fqdn}/${value}`,
  dns01Prefix: 'challenges/dns-01/',
  fallbackCert: 'fallback/cert.pem',
  fallbackKey: 'fallback/key.pem',
  issueLock: (domain: string) => `issue/${domain}`,
  accountLock: (ca: string) => `account/${ca}`,
  fallbackLock: 'fallback',
  ticketSecret: 'tls/ticket-secret',
  ticketSecretLock: 'tls-ticket-secret',
  /** `hour` is a UTC hour like 2026-11-23T18 (see src/issuance/renewal-index.ts). */
  renewalIndexBucket: (hour: string) => `index/renewal/${hour}/`,
  renewalIndex: (hour: string, domain: string) => `index/renewal/${hour}/${domain}`,
  expiryIndexBucket: (hour: string) => `index/expiry/${hour}/`,
  expiryIndex: (hour: string, domain: string) => `index/expiry/${hour}/${domain}`,
  /** Every expiry index entry (the dashboard's expiry chart lists their keys). */
  expiryIndexPrefix: 'index/expiry/',
  renewalCursor: 'index/renewal-cursor',
  expiryCursor: 'index/expiry-cursor',
  indexBackfilled: 'index/backfilled-v1',
  maintainerLock: 'maintainer-leader',
  indexBackfillLock: 'index-backfill',
  retryName: (domain: string) => `retry/names/${domain}`,
  retryCa: (ca: string) => `retry/cas/${ca}`,
  budgetLog: (ca: string, budget: string, scope: string) => `budgets/${ca}/${budget}/${scope}`,
  preflightToken: (token: string) => `preflight/${token}`,
  registryPrefix: 'registry/domains/',
  registryDomain: (domain: string) => `registry/domains/${domain}`,
  ownershipPendingPrefix: 'registry/ownership-pending/',
  ownershipPending: (domain: string) => `registry/ownership-pending/${domain}`,
  webhookDelivery: (id: string) => `webhooks/deliveries/${id}`,
  webhookDeliveriesPrefix: 'webhooks/deliveries/',
  /** `status` is pending, delivered or failed. */
  webhookStatus: (status: string, id: string) => `webhooks/${status}/${id}`,
  webhookStatusPrefix: (status: string) => `webhooks/${status}/`,
  webhookExpiringScan: 'webhooks/expiring-scan',
  /** Held by the dispatcher sending one delivery, so one instance sends it at a time. */
  webhookDeliveryLock: (id: string) => `webhook/${id}`,
} as const;

// -----------------------------------------------------------------------------------------------
// Key rules (every backend)

/** Top-level folder of held locks; reserved: put()/delete() refuse keys below it, get()/list() may read it. */
export const LOCKS_DIR = 'locks';

/** A held lock `<name>` is the entry `locks/<name>.lock` on every backend. */
export const LOCK_SUFFIX = '.lock';

/**
 * Names the file backend uses for its temp and guard files: `.<name>.<16 hex>.tmp|stale` and
 * `.<name>.lock.break`. list() never returns them and no backend accepts them as a key part.
 */
export const INTERNAL_NAME = /^\.[^]*(?:\.[0-9a-f]{16}\.(?:tmp|stale)|\.lock\.break)$/;

/** Rejects keys that could escape the storage root or are not plain relative paths (step 'validate-key'). */
export function assertValidKey(key: string): void {
  if (
    key.length === 0 ||
    key.length > 1024 ||
    key.startsWith('/') ||
    key.includes('\\') ||
    key.includes('\0') ||
    key.split('/').some((part) => part === '' || part === '.' || part === '..')
  ) {
    throw new StorageError(`invalid storage key ${JSON.stringify(key)}`, key, 'validate-key');
  }
}

/** A key get() may read: valid, and no part is an internal file name. Throws StorageError 'validate-key'. */
export function assertReadableKey(key: string): void {
  assertValidKey(key);
  if (key.split('/').some((part) => INTERNAL_NAME.test(part))) {
    throw new StorageError(`invalid storage key ${JSON.stringify(key)}: reserved internal file name`, key, 'validate-key');
  }
}

/** A key put()/delete() may change: readable, and not below the reserved `locks/`. Throws StorageError 'validate-key'. */
export function assertWritableKey(key: string): void {
  assertReadableKey(key);
  if (isLocksPrefix(key)) {
    throw new StorageError(`invalid storage key ${JSON.stringify(key)}: ${LOCKS_DIR}/ is reserved for locks`, key, 'validate-key');
  }
}

/** True for `locks` and anything below `locks/`: a list() of it includes the held locks. */
export function isLocksPrefix(prefix: string): boolean {
  return prefix === LOCKS_DIR || prefix.startsWith(`${LOCKS_DIR}/`);
}

/**
 * Checks a list() prefix and splits it at its last '/': `dirKey` (a valid key, or '' for the
 * root) and `namePrefix` (what names in that folder start with). Throws StorageError 'validate-key'.
 */
export function splitListPrefix(prefix: string): { dirKey: string; namePrefix: string } {
  const slash = typeof prefix === 'string' ? prefix.lastIndexOf('/') : -1;
  const dirKey = slash < 0 ? '' : prefix.slice(0, slash);
  const namePrefix = typeof prefix === 'string' ? prefix.slice(slash + 1) : '';
  try {
    if (typeof prefix !== 'string') assertValidKey('');
    if (dirKey !== '') assertValidKey(dirKey);
    if (prefix.length > 1024 || prefix.startsWith('/') || namePrefix.includes('\\') || namePrefix.includes('\0')) {
      assertValidKey('');
    }
  } catch (err) {
    throw new StorageError(`invalid list prefix ${JSON.stringify(prefix)}`, String(prefix), 'validate-key', { cause: err });
  }
  return { dirKey, namePrefix };
}

/**
 * Checks a lock name and returns its '/'-separated parts. A folder part may not end in `.lock`
 * (on files it would collide with the lock file of a shorter name; every backend refuses it so
 * lock names are portable). Throws StorageError 'validate-key'.
 */
export function lockNameParts(name: string): string[] {
  try {
    assertValidKey(name);
    const parts = name.split('/');
    if (parts.slice(0, -1).some((part) => part.endsWith(LOCK_SUFFIX))) assertValidKey('');
    return parts;
  } catch (err) {
    throw new StorageError(`invalid lock name ${JSON.stringify(name)}`, name, 'validate-key', { cause: err });
  }
}
