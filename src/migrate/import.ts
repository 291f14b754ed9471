// Moving certificates in from another server (Caddy, lua-resty-auto-ssl) without re-issuing
// them: one core for every source. A source reader (caddy.ts, auto-ssl.ts) streams SourceEntry
// values; each goes through these steps, a bounded number at a time (forEachOfStream):
//
//   1. the name: a host name normaliseNames accepts (`*.` + one, for a wildcard); else skipped
//      `invalid-name`
//   2. the PEM: a chain whose leaf parses and a private key that parses (CertMagic's
//      `ED25519 PRIVATE KEY` label is PKCS#8 under another name); else `unparsable-pem`.
//      The leaf must match the key (`key-mismatch`), list the name (`name-not-in-certificate`)
//      and not have expired (`expired`); the reader must have found its configured issuer
//      (`unknown-issuer`)
//   3. what storage holds for the name, under any configured CA (the one served): the same
//      certificate → `already-held` (so a second run imports 0); one that expires as late or
//      later → `newer-held` (never replaced)
//   4. with --dry-run, counted as imported and nothing written. Otherwise, under the name's issue
//      lock (the one a running gateway takes to issue it), step 3 again, then saveCertificate:
//      key (0600) first, meta, chain, then the renewal index, so the maintainer renews it as if
//      certgate had issued it
//   5. running instances learn of it: a CacheInvalidation on the bus when the storage has one
//      (Redis); with --bind, a registry binding (active, no upstream) unless the name has one
//
// Progress goes to `onProgress` every `progressEvery` entries or seconds; the summary counts
// imported and skipped by reason, and names every skipped entry but the `already-held` ones.
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { keyTypeOf, splitPemChain } from '../acme/x509.ts';
import type { CacheInvalidation } from '../issuance/memory.ts';
import { saveCertificate } from '../issuance/store.ts';
import { normalizeDomainName } from '../net/names.ts';
import type { DomainRegistry } from '../policy/registry.ts';
import type { ClusterBus } from '../storage/bus.ts';
import { keys } from '../storage/keys.ts';
import type { Storage } from '../storage/storage.ts';
import { CACHE_CHANNEL } from '../tls/cache-sync.ts';
import { channel, type Channel } from '../util/channel.ts';
import type { Logger } from '../util/log.ts';
import { forEachOfStream } from './stream.ts';

/** Why an entry was not imported (step numbers of the header). */
export const SKIP_REASONS = [
  'already-held',
  'newer-held',
  'expired',
  'key-mismatch',
  'unparsable-pem',
  'invalid-name',
  'name-not-in-certificate',
  'unknown-issuer',
  'unreadable-entry',
] as const;
/** One of SKIP_REASONS. */
export type SkipReason = (typeof SKIP_REASONS)[number];

/** A configured ACME issuer an imported certificate is filed under: its CA id (storage/keys.ts) and directory URL. */
export interface IssuerRef {
  ca: string;
  directory: string;
}

/** One certificate a source reader found, as read (nothing checked yet). */
export interface SourceEntry {
  /** Where it came from (a file path, a Redis key), for the skip list. */
  source: string;
  /** The name as the source names it (`*.x` for a wildcard). */
  name: string;
  /** The full chain, leaf first. */
  certPem?: string | undefined;
  keyPem?: string | undefined;
  /** The configured issuer it came from; undefined when none matches (skipped `unknown-issuer`, `problem` says which). */
  issuer?: IssuerRef | undefined;
  /** Set when the reader could not read the entry (a missing file, bad JSON): skipped `unreadable-entry` with this. */
  problem?: string | undefined;
}

/** A skipped entry, named in the summary. */
export interface SkippedEntry {
  name: string;
  source: string;
  reason: SkipReason;
  detail?: string;
}

/** Progress of a long run, as reported to onProgress. */
export interface ImportProgress {
  read: number;
  imported: number;
  skipped: number;
  elapsedMs: number;
}

/** What an import did (with --dry-run: what it would have done). */
export interface ImportSummary {
  dryRun: boolean;
  read: number;
  imported: number;
  skipped: Record<SkipReason, number>;
  /** Every skipped entry but `already-held` ones, at most MAX_LISTED_SKIPS (`skippedListTruncated` says when more). */
  skippedEntries: SkippedEntry[];
  skippedListTruncated: boolean;
  /** Registry bindings created (--bind). */
  bound: number;
  elapsedMs: number;
}

/** What importCertificates writes to and how. */
export interface ImportOptions {
  storage: Storage;
  /** The cluster bus of the storage (Redis): running instances are told of each import. */
  bus?: ClusterBus | undefined;
  /** The CA ids certgate serves from, in acme.issuers order: an existing certificate is looked for under each. */
  cas: string[];
  logger: Logger;
  dryRun?: boolean;
  /** --bind: also create an active binding (no upstream) for each imported name that has none. */
  registry?: Pick<DomainRegistry, 'get' | 'put'> | undefined;
  /** Entries handled at once (default 16). */
  concurrency?: number;
  /** Called every `progressEvery.entries` entries or `progressEvery.ms`, whichever comes first. */
  onProgress?: (progress: ImportProgress) => void;
  progressEvery?: { entries: number; ms: number };
  /** The issue lock's expiry; default 60 s. */
  lockTtlMs?: number;
  now?: () => number;
}

/** The most skipped entries the summary lists one by one. */
export const MAX_LISTED_SKIPS = 10_000;

type Outcome = { imported: true; name: string; fingerprint256: string } | { imported: false; reason: SkipReason; name: string; detail?: string };

/** A checked entry, ready to store (step 2 passed). */
interface Checked {
  name: string;
  issuer: IssuerRef;
  certPem: string;
  keyPem: string;
  keyType: string;
  leaf: X509Certificate;
}

/**
 * Imports every entry of `entries` (see the header) and returns the summary. Never throws for a
 * bad entry (it is skipped with its reason); a storage failure rejects with the name and step.
 */
export async function importCertificates(entries: AsyncIterable<SourceEntry>, opts: ImportOptions): Promise<ImportSummary> {
  const now = opts.now ?? Date.now;
  const started = now();
  const summary: ImportSummary = {
    dryRun: opts.dryRun === true,
    read: 0,
    imported: 0,
    skipped: Object.fromEntries(SKIP_REASONS.map((r) => [r, 0])) as Record<SkipReason, number>,
    skippedEntries: [],
    skippedListTruncated: false,
    bound: 0,
    elapsedMs: 0,
  };
  const invalidations = opts.bus && !opts.dryRun ? channel<CacheInvalidation>(opts.bus, CACHE_CHANNEL, () => undefined, { dropOwn: true }) : undefined;
  const progress = progressReporter(summary, opts, started, now);
  await forEachOfStream(entries, opts.concurrency ?? 16, async (entry) => {
    summary.read++;
    const outcome = await importOne(entry, opts, now(), invalidations);
    if (outcome.imported) summary.imported++;
    else {
      summary.skipped[outcome.reason]++;
      if (outcome.reason !== 'already-held') {
        if (summary.skippedEntries.length < MAX_LISTED_SKIPS) {
          summary.skippedEntries.push({ name: outcome.name, source: entry.source, reason: outcome.reason, ...(outcome.detail ? { detail: outcome.detail } : {}) });
        } else summary.skippedListTruncated = true;
      }
    }
    if (outcome.imported && opts.registry && !opts.dryRun && (await bindIfUnbound(opts.registry, outcome.name))) summary.bound++;
    progress();
  });
  summary.elapsedMs = now() - started;
  return summary;
}

function progressReporter(summary: ImportSummary, opts: ImportOptions, started: number, now: () => number): () => void {
  const every = opts.progressEvery ?? { entries: 1_000, ms: 5_000 };
  let lastAt = started;
  let lastRead = 0;
  return () => {
    if (!opts.onProgress) return;
    const t = now();
    if (summary.read - lastRead < every.entries && t - lastAt < every.ms) return;
    lastAt = t;
    lastRead = summary.read;
    const skipped = Object.values(summary.skipped).reduce((a, b) => a + b, 0);
    opts.onProgress({ read: summary.read, imported: summary.imported, skipped, elapsedMs: t - started });
  };
}

/** Steps 1-5 for one entry. */
async function importOne(entry: SourceEntry, opts: ImportOptions, nowMs: number, invalidations: Channel<CacheInvalidation> | undefined): Promise<Outcome> {
  const checked = checkEntry(entry, nowMs);
  if ('reason' in checked) return checked;
  const { name } = checked;
  const cas = opts.cas.includes(checked.issuer.ca) ? opts.cas : [...opts.cas, checked.issuer.ca];
  // 3. A cheap look before the lock: on a second run every entry ends here.
  const held = await heldVerdict(opts.storage, cas, checked);
  if (held) return held;
  if (opts.dryRun) return { imported: true, name, fingerprint256: checked.leaf.fingerprint256 };
  // 4. Under the lock a running gateway takes to issue the name, so an order it places now and
  // this import do not overwrite each other blindly; what it stored meanwhile is looked at again.
  const lock = await opts.storage.lock(keys.issueLock(name), { ttlMs: opts.lockTtlMs ?? 60_000 });
  try {
    const raced = await heldVerdict(opts.storage, cas, checked);
    if (raced) return raced;
    await saveCertificate(opts.storage, { domain: name, ca: checked.issuer.ca, directory: checked.issuer.directory, certPem: checked.certPem, keyPem: checked.keyPem, keyType: checked.keyType });
  } catch (err) {
    throw new Error(`import of ${name} from ${entry.source} failed (step: store): ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  } finally {
    await lock.release().catch((err: unknown) => opts.logger.warn({ domain: name, step: 'lock-release', err }, 'import: issue lock release failed'));
  }
  // 5. Best effort: an instance that misses it loads the certificate from storage on a cache miss.
  await invalidations
    ?.publish({ domain: name, event: 'updated', fingerprint256: checked.leaf.fingerprint256 })
    .catch((err: unknown) => opts.logger.warn({ domain: name, step: 'announce', err }, 'import: could not announce the certificate'));
  return { imported: true, name, fingerprint256: checked.leaf.fingerprint256 };
}

/** Steps 1-2: the entry as a certificate ready to store, or why it is skipped. */
export function checkEntry(entry: SourceEntry, nowMs: number): Checked | Extract<Outcome, { imported: false }> {
  const skip = (reason: SkipReason, detail?: string) => ({ imported: false as const, reason, name: entry.name, ...(detail ? { detail } : {}) });
  if (entry.problem !== undefined) return skip('unreadable-entry', entry.problem);
  const name = normaliseName(entry.name);
  if (name === undefined) return skip('invalid-name', `${JSON.stringify(entry.name)} is not a host name a CA issues for`);
  const blocks = splitPemChain(entry.certPem ?? '');
  let leaf: X509Certificate;
  let key: KeyObject;
  try {
    leaf = new X509Certificate(blocks[0] ?? '');
    blocks.slice(1).forEach((b) => new X509Certificate(b));
  } catch (err) {
    return skip('unparsable-pem', `certificate: ${err instanceof Error ? err.message : String(err)}`);
  }
  try {
    key = parsePrivateKey(entry.keyPem ?? '');
  } catch (err) {
    return skip('unparsable-pem', `private key: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (!leaf.checkPrivateKey(key)) return skip('key-mismatch', `the private key does not belong to the certificate ${leaf.fingerprint256}`);
  const names = certificateNames(leaf);
  // Served for this name only if it covers it: listed, or one label below a listed wildcard.
  if (!names.includes(name) && (name.startsWith('*.') || !names.includes(`*.${name.slice(name.indexOf('.') + 1)}`))) {
    return skip('name-not-in-certificate', `the certificate is for ${names.join(', ') || 'no DNS name'}`);
  }
  if (leaf.validToDate.getTime() <= nowMs) return skip('expired', `expired ${leaf.validToDate.toISOString()}`);
  if (!entry.issuer) return skip('unknown-issuer', `no configured acme issuer matches where it came from (${entry.source})`);
  return { name, issuer: entry.issuer, certPem: blocks.join(''), keyPem: key.export({ type: 'pkcs8', format: 'pem' }).toString(), keyType: keyTypeOf(key) ?? key.asymmetricKeyType ?? 'unknown', leaf };
}

/** A host name (or `*.` and one) normalised as the registry and SNI spell it, or undefined. */
export function normaliseName(raw: string): string | undefined {
  const wildcard = raw.startsWith('*.');
  const base = normalizeDomainName(wildcard ? raw.slice(2) : raw);
  return base === undefined ? undefined : wildcard ? `*.${base}` : base;
}

/**
 * A private key from PEM. CertMagic writes Ed25519 keys as PKCS#8 under the label
 * `ED25519 PRIVATE KEY`, which OpenSSL does not know: read it as the PKCS#8 it is.
 */
export function parsePrivateKey(pem: string): KeyObject {
  return createPrivateKey(pem.replace(/-----(BEGIN|END) ED25519 PRIVATE KEY-----/g, '-----$1 PRIVATE KEY-----'));
}

function certificateNames(leaf: X509Certificate): string[] {
  return (leaf.subjectAltName ?? '').split(/,\s*/).flatMap((p) => (p.startsWith('DNS:') ? [p.slice(4).toLowerCase()] : []));
}

/** Step 3: the certificate storage serves for the name (first of `cas` with one) against the new one. */
async function heldVerdict(storage: Storage, cas: string[], checked: Checked): Promise<Extract<Outcome, { imported: false }> | null> {
  for (const ca of cas) {
    const pem = await storage.get(keys.certificate(ca, checked.name));
    if (!pem) continue;
    let held: X509Certificate;
    try {
      held = new X509Certificate(pem);
    } catch {
      return null; // a damaged chain is replaced
    }
    if (held.fingerprint256 === checked.leaf.fingerprint256) return { imported: false, reason: 'already-held', name: checked.name };
    if (held.validToDate.getTime() >= checked.leaf.validToDate.getTime()) {
      return { imported: false, reason: 'newer-held', name: checked.name, detail: `certgate holds one expiring ${held.validToDate.toISOString()} (this one: ${checked.leaf.validToDate.toISOString()})` };
    }
    return null;
  }
  return null;
}

async function bindIfUnbound(registry: Pick<DomainRegistry, 'get' | 'put'>, name: string): Promise<boolean> {
  if ((await registry.get(name)) !== null) return false;
  await registry.put(name, { enabled: true });
  return true;
}
