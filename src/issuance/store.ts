// Certificate bundles in storage: the full chain, its private key (0600) and metadata.
// The key is written first and the chain last, so a reader that finds cert.pem finds a key
// that belongs to it; meta.json is informational.
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseCertificate } from '../acme/x509.ts';
import { indexEntries } from './renewal-index.ts';
import { keys } from '../storage/keys.ts';
import { getJson, putInOrder, retryStorageErrors, type Storage } from '../storage/storage.ts';
import type { Logger } from '../util/log.ts';

/** meta.json beside a stored chain: informational (status, renewal index), never served. */
export interface CertificateMeta {
  domain: string;
  names: string[];
  ca: string;
  directory: string;
  notBefore: string;
  notAfter: string;
  serialNumber: string;
  fingerprint256: string;
  keyType: string;
  challenge?: string;
  orderUrl?: string;
  obtainedAt: string;
}

/** A stored certificate with its key, as loaded to be served; the chain's leaf matches the key. */
export interface CertificateBundle {
  domain: string;
  ca: string;
  certPem: string;
  keyPem: string;
  notBefore: Date;
  notAfter: Date;
  fingerprint256: string;
}

/**
 * Loads the bundle for `domain` from the first CA (in order) that has one; null when none.
 * A replacement being written may be seen half-way (new key, old chain): the pair is checked
 * and read again, briefly, until it matches.
 */
export async function loadCertificate(storage: Storage, cas: string[], domain: string): Promise<CertificateBundle | null> {
  for (const ca of cas) {
    for (let attempt = 0; ; attempt++) {
      const [cert, key] = await Promise.all([storage.get(keys.certificate(ca, domain)), storage.get(keys.certificateKey(ca, domain))]);
      if (!cert || !key) break;
      const certPem = cert.toString('utf8');
      const keyPem = key.toString('utf8');
      const leaf = new X509Certificate(certPem); // the first certificate of the chain
      if (leaf.checkPrivateKey(createPrivateKey(keyPem))) {
        return { domain, ca, certPem, keyPem, notBefore: leaf.validFromDate, notAfter: leaf.validToDate, fingerprint256: leaf.fingerprint256 };
      }
      if (attempt >= 5) throw new Error(`certificate for ${domain} in ${storage.description} does not match its key (step: load)`);
      await sleep(50 * (attempt + 1));
    }
  }
  return null;
}

/** A stored certificate's chain and metadata, and which CA's directory holds it (the CA that issued it). */
export interface StoredCertificate {
  domain: string;
  ca: string;
  certPem: string;
  meta: CertificateMeta;
}

/**
 * Which CA holds the certificate for `domain`, by the rule loadCertificate serves by (the first
 * of `cas`, in order, with a chain), with its chain and metadata; null when none does. For
 * status and revocation: the private key is not read.
 */
export async function findCertificate(storage: Storage, cas: string[], domain: string): Promise<StoredCertificate | null> {
  for (const ca of cas) {
    const cert = await storage.get(keys.certificate(ca, domain));
    if (!cert) continue;
    // Written before the chain and deleted after it, so a chain without it means damaged storage.
    const meta = await getJson<CertificateMeta>(storage, keys.certificateMeta(ca, domain));
    if (!meta) throw new Error(`certificate for ${domain} under CA ${ca} in ${storage.description} has no readable meta.json (step: load)`);
    return { domain, ca, certPem: cert.toString('utf8'), meta };
  }
  return null;
}

/**
 * Stores a freshly issued certificate under its CA: key (private), meta.json, then the chain, then
 * its renewal-index entries, one putMany made visible in that order, so a reader that finds the
 * chain finds its key. Returns the bundle.
 */
export async function saveCertificate(
  storage: Storage,
  bundle: { domain: string; ca: string; directory: string; certPem: string; keyPem: string; keyType: string; challenge?: string; orderUrl?: string },
): Promise<CertificateBundle> {
  const leaf = parseCertificate(bundle.certPem);
  const meta: CertificateMeta = {
    domain: bundle.domain,
    names: leaf.names,
    ca: bundle.ca,
    directory: bundle.directory,
    notBefore: leaf.notBefore.toISOString(),
    notAfter: leaf.notAfter.toISOString(),
    serialNumber: leaf.serialNumber,
    fingerprint256: leaf.fingerprint256,
    keyType: bundle.keyType,
    ...(bundle.challenge ? { challenge: bundle.challenge } : {}),
    ...(bundle.orderUrl ? { orderUrl: bundle.orderUrl } : {}),
    obtainedAt: new Date().toISOString(),
  };
  // One putMany, visible in this order: the key, meta.json, the chain, then the index entries (after
  // the chain: an entry points at a certificate that exists; entries of the certificate this one
  // replaces are dropped when the maintainer reaches them). One batch costs a fsync per file and
  // one per directory, not a directory fsync per value.
  await putInOrder(storage, [
    { key: keys.certificateKey(bundle.ca, bundle.domain), value: bundle.keyPem, opts: { private: true } },
    { key: keys.certificateMeta(bundle.ca, bundle.domain), value: JSON.stringify(meta, null, 2) + '\n' },
    { key: keys.certificate(bundle.ca, bundle.domain), value: bundle.certPem },
    ...indexEntries(meta),
  ]);
  return { domain: bundle.domain, ca: bundle.ca, certPem: bundle.certPem, keyPem: bundle.keyPem, notBefore: leaf.notBefore, notAfter: leaf.notAfter, fingerprint256: leaf.fingerprint256 };
}

/**
 * Removes the bundle (chain first, so no reader finds a chain without its key). Its index
 * entries are dropped lazily by the maintainer (they name a certificate that is gone).
 */
export async function deleteCertificate(storage: Storage, ca: string, domain: string): Promise<void> {
  await storage.delete(keys.certificate(ca, domain));
  await storage.delete(keys.certificateKey(ca, domain));
  await storage.delete(keys.certificateMeta(ca, domain));
}

/** Whether a stored certificate may be served: it has not expired. */
export function isUsable(bundle: CertificateBundle, now = Date.now()): boolean {
  return bundle.notAfter.getTime() > now;
}

/**
 * Runs one storage operation for `domain`, retrying storage errors with backoff (250 ms doubling
 * to 5 s) for up to `budgetMs`, logging each retry with the domain and `step`; then it rejects.
 */
export type RetryStorage = <T>(domain: string, step: string, op: () => Promise<T>, budgetMs?: number) => Promise<T>;

/** A RetryStorage whose budget is `defaultBudgetMs` unless a call names its own. */
export function storageRetrier(logger: Logger, defaultBudgetMs: number): RetryStorage {
  return (domain, step, op, budgetMs = defaultBudgetMs) =>
    retryStorageErrors(op, { budgetMs, initialDelayMs: 250, maxDelayMs: 5_000 }, { logger, fields: { domain, step }, message: 'storage unavailable; retrying with backoff' });
}
