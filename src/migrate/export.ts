// `certgate export --to DIR`: every certificate certgate holds as PEM files per name, for leaving
// or for another tool (the layout certbot and most servers read):
//
//   DIR/<name>/fullchain.pem   leaf then intermediates, as served
//   DIR/<name>/cert.pem        the leaf
//   DIR/<name>/chain.pem       the intermediates
//   DIR/<name>/privkey.pem     the private key (PKCS#8), mode 0600; folders are 0700
//
// A wildcard `*.example.com` goes to `_wildcard.example.com` (`*` is a glob character in every
// shell). A name held under several CAs is exported as served: the first of acme.issuers with
// one, then the rest in name order. Each file is written atomically (temp file and rename), so
// a run over an earlier export leaves every file whole.
import { join } from 'node:path';
import { splitPemChain } from '../acme/x509.ts';
import { loadCertificate } from '../issuance/store.ts';
import { writeAtomic } from '../storage/file/atomic-write.ts';
import type { Storage } from '../storage/storage.ts';

/** What an export wrote, and what it could not. */
export interface ExportSummary {
  exported: number;
  /** Names whose stored certificate could not be exported, with why. */
  failed: Array<{ name: string; error: string }>;
  elapsedMs: number;
}

/** The folder a name is exported to: the name, `*.` as `_wildcard.`. */
export function exportFolderOf(name: string): string {
  return name.startsWith('*.') ? `_wildcard.${name.slice(2)}` : name;
}

/**
 * Every stored certificate's domain with the CA ids holding it, from one paged walk of
 * `certificates/` (keys `certificates/<ca>/<domain>/cert.pem`).
 */
async function heldCertificates(storage: Storage): Promise<Map<string, string[]>> {
  const held = new Map<string, string[]>();
  let after: string | undefined;
  for (;;) {
    const page = await storage.list('certificates/', { limit: 1_000, ...(after !== undefined ? { after } : {}) });
    for (const key of page) {
      const parts = key.split('/');
      if (parts.length !== 4 || parts[3] !== 'cert.pem') continue;
      held.set(parts[2]!, [...(held.get(parts[2]!) ?? []), parts[1]!]);
    }
    if (page.length < 1_000) return held;
    after = page[page.length - 1];
  }
}

/** Writes every held certificate below `dir` (see the header); `cas`: acme.issuers' CA ids, in order. */
export async function exportCertificates(storage: Storage, cas: string[], dir: string): Promise<ExportSummary> {
  const started = Date.now();
  const summary: ExportSummary = { exported: 0, failed: [], elapsedMs: 0 };
  for (const [name, holders] of [...(await heldCertificates(storage))].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const order = [...cas.filter((ca) => holders.includes(ca)), ...holders.filter((ca) => !cas.includes(ca)).sort()];
    try {
      const bundle = await loadCertificate(storage, order, name);
      if (!bundle) continue; // removed since the walk
      const [leaf = '', ...intermediates] = splitPemChain(bundle.certPem);
      const folder = join(dir, exportFolderOf(name));
      await writeAtomic(join(folder, 'privkey.pem'), Buffer.from(bundle.keyPem), 0o600, `${name}/privkey.pem`, true);
      await writeAtomic(join(folder, 'cert.pem'), Buffer.from(leaf), 0o644, `${name}/cert.pem`, true);
      await writeAtomic(join(folder, 'chain.pem'), Buffer.from(intermediates.join('')), 0o644, `${name}/chain.pem`, true);
      await writeAtomic(join(folder, 'fullchain.pem'), Buffer.from(leaf + intermediates.join('')), 0o644, `${name}/fullchain.pem`, true);
      summary.exported++;
    } catch (err) {
      summary.failed.push({ name, error: `export of ${name} failed (step: ${(err as { step?: string }).step ?? 'load'}): ${err instanceof Error ? err.message : String(err)}` });
    }
  }
  summary.elapsedMs = Date.now() - started;
  return summary;
}
