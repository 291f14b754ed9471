// Reads Caddy's certificate storage (CertMagic's file storage, `caddy`'s data directory) for
// `certgate import caddy --from DIR`:
//
//   certificates/<issuer key>/<name>/<name>.crt|.key|.json   one certificate: the full chain, its
//                                        key, and metadata ({"sans": [...], "issuer_data": ...})
//   acme/<issuer key>/users/<email>/<user>.key|.json        an ACME account: its key, and the
//                                        registration ({"status", "contact", "location", ...});
//                                        <user> is the email's part before '@', "default" without one
//
// <name> is CertMagic's storage-safe form of the name: lower case, `*` → `wildcard_`. The issuer
// key is made from the CA's directory URL (caddyIssuerKey), which is how a folder is matched to a
// configured `acme` issuer. Folders are walked one at a time (opendir): nothing is held whole.
import { opendir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { IssuerRef, SourceEntry } from './import.ts';

/** An ACME account found in Caddy's storage, for a configured issuer. */
export interface CaddyAccount {
  issuer: IssuerRef;
  /** The folder's email (`default` when the account has none). */
  email: string;
  keyPem: string;
  /** The account URL (`location` of the registration), when recorded. */
  url?: string | undefined;
  /** The files it was read from. */
  source: string;
}

/**
 * CertMagic's issuer key for an ACME directory URL, made storage-safe (its `issuerKey` then
 * `KeyBuilder.Safe`): `https://acme-v02.api.letsencrypt.org/directory` →
 * `acme-v02.api.letsencrypt.org-directory`, `https://127.0.0.1:14000/dir` → `127.0.0.1-14000-dir`.
 */
export function caddyIssuerKey(directoryUrl: string): string {
  const u = new URL(directoryUrl);
  const path = u.pathname.replace(/[/\\]/g, '-').replace(/^-+|-+$/g, '');
  const key = path ? `${u.host}-${path}` : u.host;
  return safeKey(key);
}

/** CertMagic's KeyBuilder.Safe: one storage-key component. */
function safeKey(s: string): string {
  return s
    .toLowerCase()
    .trim()
    .replace(/ /g, '_')
    .replace(/\+/g, '_plus_')
    .replace(/\*/g, 'wildcard_')
    .replace(/:/g, '-')
    .replace(/\.\./g, '')
    .replace(/[^\w@.-]/g, '');
}

/** The name a certificate folder stands for: `wildcard_.example.com` → `*.example.com`. */
export function nameOfCaddyFolder(folder: string): string {
  return folder.startsWith('wildcard_.') ? `*.${folder.slice('wildcard_.'.length)}` : folder;
}

/** Caddy's issuer key → the configured issuer it stands for. */
export function caddyIssuerMap(issuers: IssuerRef[]): Map<string, IssuerRef> {
  return new Map(issuers.map((i) => [caddyIssuerKey(i.directory), i]));
}

/**
 * Every certificate folder below `<root>/certificates/`, as SourceEntry values (read, not
 * checked). A folder of an issuer key no configured issuer has yields entries without `issuer`.
 */
export async function* readCaddyCertificates(root: string, issuers: IssuerRef[]): AsyncGenerator<SourceEntry> {
  const byKey = caddyIssuerMap(issuers);
  const certificates = join(root, 'certificates');
  for await (const issuerDir of await opendir(certificates)) {
    if (!issuerDir.isDirectory()) continue;
    const issuer = byKey.get(issuerDir.name);
    for await (const site of await opendir(join(certificates, issuerDir.name))) {
      if (!site.isDirectory()) continue;
      const dir = join(certificates, issuerDir.name, site.name);
      const name = nameOfCaddyFolder(site.name);
      const [certPem, keyPem] = await Promise.all([readText(join(dir, `${site.name}.crt`)), readText(join(dir, `${site.name}.key`))]);
      const missing = [certPem === undefined ? `${site.name}.crt` : '', keyPem === undefined ? `${site.name}.key` : ''].filter(Boolean);
      yield {
        source: dir,
        name,
        certPem,
        keyPem,
        issuer,
        ...(missing.length > 0 ? { problem: `missing ${missing.join(' and ')}` } : {}),
      };
    }
  }
}

/**
 * The ACME accounts below `<root>/acme/<issuer key>/users/` of the configured issuers (others are
 * of no use to certgate), sorted by issuer then email. An account without a readable key is left out.
 */
export async function readCaddyAccounts(root: string, issuers: IssuerRef[]): Promise<CaddyAccount[]> {
  const accounts: CaddyAccount[] = [];
  for (const [key, issuer] of caddyIssuerMap(issuers)) {
    const users = join(root, 'acme', key, 'users');
    let emails: string[];
    try {
      emails = [];
      for await (const d of await opendir(users)) if (d.isDirectory()) emails.push(d.name);
    } catch {
      continue; // no account for this CA
    }
    for (const email of emails.sort()) {
      const user = safeKey(email.includes('@') ? email.slice(0, email.indexOf('@')) || email.slice(1) : email) || 'private';
      const keyPem = await readText(join(users, email, `${user}.key`));
      if (keyPem === undefined) continue;
      const reg = await readText(join(users, email, `${user}.json`));
      let url: string | undefined;
      try {
        const parsed = reg === undefined ? undefined : (JSON.parse(reg) as { location?: unknown });
        if (typeof parsed?.location === 'string') url = parsed.location;
      } catch {
        // An unreadable registration: the key alone finds the account again (newAccount).
      }
      accounts.push({ issuer, email, keyPem, url, source: join(users, email) });
    }
  }
  return accounts;
}

async function readText(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch {
    return undefined;
  }
}
