// Where things live in storage. One place, so a human reading the tree and the code agree:
//   certificates/<ca>/<domain>/{cert.pem,key.pem,meta.json}
//   accounts/<ca>/<email or "default">/{key.pem,account.json}
//   challenges/http-01/<token>, challenges/tls-alpn-01/<domain>/{cert.pem,key.pem}
//   fallback/{cert.pem,key.pem}
//   tls/ticket-secret (shared TLS session ticket key material)
//   locks/... (file storage only)
//   index/renewal/<UTC hour>/<domain>   when the maintainer next looks at a certificate (src/maintain/)
//   index/expiry/<UTC hour>/<domain>    when a certificate expires, for cleanup
//   index/renewal-cursor, index/expiry-cursor, index/backfilled-v1   the maintainer's bookmarks
//   retry/names/<domain>, retry/cas/<ca>   backoff after failures, CA pauses (src/acme/retry.ts)
//   budgets/<ca>/<budget>/<scope>          rate-limit budget logs (src/policy/budgets.ts)
//   preflight/<token>                      pre-flight probe answers (src/policy/preflight.ts)
//   registry/domains/<domain>              domain bindings (src/policy/registry.ts)

/** A storage-safe id for a CA, from its directory URL: `acme-v02.api.letsencrypt.org-directory`. */
export function caIdFromDirectory(directoryUrl: string): string {
  const u = new URL(directoryUrl);
  const parts = [u.hostname.replace(/[^a-zA-Z0-9.-]/g, '_')];
  if (u.port) parts.push(u.port);
  for (const seg of u.pathname.split('/')) if (seg) parts.push(seg.replace(/[^a-zA-Z0-9._-]/g, '_'));
  return parts.join('-').toLowerCase();
}

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
  fallbackCert: 'fallback/cert.pem',
  fallbackKey: 'fallback/key.pem',
  issueLock: (domain: string) => `issue/${domain}`,
  accountLock: (ca: string) => `account/${ca}`,
  fallbackLock: 'fallback',
  ticketSecret: 'tls/ticket-secret',
  ticketSecretLock: 'tls-ticket-secret',
  /** `hour` is a UTC hour like 2026-11-23T18 (see src/maintain/renewal-index.ts). */
  renewalIndexBucket: (hour: string) => `index/renewal/${hour}/`,
  renewalIndex: (hour: string, domain: string) => `index/renewal/${hour}/${domain}`,
  expiryIndexBucket: (hour: string) => `index/expiry/${hour}/`,
  expiryIndex: (hour: string, domain: string) => `index/expiry/${hour}/${domain}`,
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
} as const;
