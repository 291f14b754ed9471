// The `certgate import caddy|auto-ssl` and `certgate export` commands, behind src/cli.ts:
//
//   1. open the configured storage (file or Redis, from --config like `run`); a running gateway
//      on it may stay up: writes are atomic, under the locks it takes, and announced on its bus
//   2. import: the Caddy accounts first (accounts.ts), then the certificates streamed from the
//      source through the import core (import.ts), a progress line on stderr on long runs;
//      export: export.ts
//   3. the summary on stdout (text, or JSON with --json); exit code 0 when the run completed
//      (skipped entries included), 1 when it failed, 2 for a wrong option
import type { Config } from '../config/schema.ts';
import { DomainRegistry } from '../policy/registry.ts';
import { caIdFromDirectory } from '../storage/keys.ts';
import { openStorage } from '../storage/open.ts';
import type { Storage } from '../storage/storage.ts';
import type { ClusterBus } from '../storage/bus.ts';
import { createLogger, type Logger } from '../util/log.ts';
import { importAccounts, type AccountOutcome } from './accounts.ts';
import { readAutoSsl } from './auto-ssl.ts';
import { readCaddyAccounts, readCaddyCertificates } from './caddy.ts';
import { exportCertificates } from './export.ts';
import { importCertificates, type ImportProgress, type ImportSummary, type IssuerRef, type SourceEntry } from './import.ts';

/** Where `certgate import` reads from: Caddy's data directory, or lua-resty-auto-ssl's Redis. */
export type ImportSource = { kind: 'caddy'; from: string } | { kind: 'auto-ssl'; redis: string; prefix?: string | undefined; issuer?: string | undefined };

/** The options both imports share. */
export interface ImportFlags {
  dryRun?: boolean | undefined;
  bind?: boolean | undefined;
  json?: boolean | undefined;
  /** Entries handled at once (default 16). */
  concurrency?: number | undefined;
}

/** Where the commands write: stdout for the summary, stderr for progress and errors. */
export interface CommandOutput {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

const processOutput: CommandOutput = { stdout: (t) => process.stdout.write(t), stderr: (t) => process.stderr.write(t) };

/** The configured issuers (acme.issuers, in order) as the import files certificates under them. */
export function issuerRefs(config: Pick<Config, 'acme'>): IssuerRef[] {
  return config.acme.issuers.map((i) => ({ ca: caIdFromDirectory(i.directory), directory: i.directory }));
}

/** `certgate import ...` (steps 1-3 of the header); resolves to the exit code. */
export async function runImport(config: Config, source: ImportSource, flags: ImportFlags, out: CommandOutput = processOutput): Promise<number> {
  const issuers = issuerRefs(config);
  let autoSslIssuer: IssuerRef | undefined;
  if (source.kind === 'auto-ssl') {
    autoSslIssuer = source.issuer === undefined ? issuers[0] : issuers.find((i) => i.directory === source.issuer);
    if (!autoSslIssuer) {
      out.stderr(`certgate import auto-ssl: --issuer ${source.issuer} is not one of acme.issuers (${issuers.map((i) => i.directory).join(', ')})\n`);
      return 2;
    }
  }
  return withStorage(config, `import ${source.kind}`, out, async ({ storage, bus, logger }) => {
    const accounts = source.kind === 'caddy' ? await importAccounts(storage, await readCaddyAccounts(source.from, issuers), config.acme.email, flags.dryRun === true) : [];
    const entries: AsyncIterable<SourceEntry> =
      source.kind === 'caddy' ? readCaddyCertificates(source.from, issuers) : readAutoSsl({ url: source.redis, prefix: source.prefix, issuer: autoSslIssuer! });
    const registry = flags.bind && !flags.dryRun ? new DomainRegistry({ storage, logger }) : undefined;
    if (registry && bus) await registry.attachBus(bus);
    try {
      const summary = await importCertificates(entries, {
        storage,
        bus,
        cas: issuers.map((i) => i.ca),
        logger,
        dryRun: flags.dryRun === true,
        registry,
        ...(flags.concurrency !== undefined ? { concurrency: flags.concurrency } : {}),
        onProgress: (p) => out.stderr(progressLine(source.kind, p)),
      });
      out.stdout(flags.json ? JSON.stringify({ ...summary, accounts }, null, 2) + '\n' : formatImport(source.kind, summary, accounts));
      return 0;
    } finally {
      await registry?.close();
    }
  });
}

/** `certgate export --to DIR`; resolves to the exit code (1 when any certificate could not be exported). */
export async function runExport(config: Config, to: string, json: boolean, out: CommandOutput = processOutput): Promise<number> {
  return withStorage(config, 'export', out, async ({ storage }) => {
    const summary = await exportCertificates(storage, issuerRefs(config).map((i) => i.ca), to);
    if (json) out.stdout(JSON.stringify(summary, null, 2) + '\n');
    else {
      out.stdout(`certgate export: ${summary.exported} certificates written to ${to} in ${seconds(summary.elapsedMs)}\n`);
      for (const f of summary.failed) out.stdout(`  failed ${f.name}: ${f.error}\n`);
    }
    return summary.failed.length > 0 ? 1 : 0;
  });
}

/** Opens the configured storage for `work` and closes it after; an error is printed with the command's name (exit 1). */
async function withStorage(config: Config, command: string, out: CommandOutput, work: (s: { storage: Storage; bus: ClusterBus | undefined; logger: Logger }) => Promise<number>): Promise<number> {
  // Logs go to stderr: stdout carries the summary (and --json must stay parseable).
  const logger = createLogger({ level: config.log.level === 'info' ? 'warn' : config.log.level, fd: 2 });
  let opened: { storage: Storage; bus?: ClusterBus } | undefined;
  try {
    opened = await openStorage(config.storage, logger);
    return await work({ storage: opened.storage, bus: opened.bus, logger });
  } catch (err) {
    out.stderr(`certgate ${command}: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  } finally {
    await opened?.storage.close().catch(() => undefined);
  }
}

function progressLine(kind: string, p: ImportProgress): string {
  const rate = p.elapsedMs > 0 ? Math.round((p.read * 1000) / p.elapsedMs) : 0;
  return `certgate import ${kind}: ${p.read} read, ${p.imported} imported, ${p.skipped} skipped (${rate}/s, ${seconds(p.elapsedMs)})\n`;
}

/** The text summary: totals, skips by reason, each skipped entry but the already-held, the accounts. */
export function formatImport(kind: string, s: ImportSummary, accounts: AccountOutcome[]): string {
  const lines: string[] = [];
  const skipped = Object.values(s.skipped).reduce((a, b) => a + b, 0);
  const rate = s.elapsedMs > 0 ? Math.round((s.read * 1000) / s.elapsedMs) : s.read;
  lines.push(`certgate import ${kind}${s.dryRun ? ' (dry run: nothing written)' : ''}: ${s.read} read, ${s.imported} ${s.dryRun ? 'would be imported' : 'imported'}, ${skipped} skipped in ${seconds(s.elapsedMs)} (${rate}/s)`);
  for (const [reason, n] of Object.entries(s.skipped)) if (n > 0) lines.push(`  skipped ${reason}: ${n}`);
  for (const e of s.skippedEntries) lines.push(`  skipped ${e.name} (${e.reason}): ${e.detail ?? ''} [${e.source}]`);
  if (s.skippedListTruncated) lines.push('  (more skipped entries not listed; see the counts above)');
  if (s.bound > 0) lines.push(`  bindings created: ${s.bound}`);
  for (const a of accounts) lines.push(`  ACME account for ${a.ca}: ${a.result}${a.detail ? ` (${a.detail})` : ''} [${a.source}]`);
  return lines.join('\n') + '\n';
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}
