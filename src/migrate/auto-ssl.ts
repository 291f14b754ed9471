// Reads lua-resty-auto-ssl's Redis storage for `certgate import auto-ssl --redis URL`. Its
// storage (lib/resty/auto-ssl/storage.lua) keeps one JSON string per domain under
// `<domain>:latest`: {fullchain_pem, privkey_pem, cert_pem, expiry}; its Redis adapter
// (storage_adapters/redis.lua) puts its `prefix` option and a colon in front: `P:<domain>:latest`.
// Keys are found with SCAN MATCH (never KEYS, which would stall a live Redis), a page at a time,
// and their values fetched with one MGET per page. It records no CA: every entry is filed under
// the issuer the caller names.
import { createClient } from 'redis';
import type { IssuerRef, SourceEntry } from './import.ts';

/** What readAutoSsl reads: the Redis URL, auto-ssl's `prefix` option, the issuer to file under. */
export interface AutoSslSource {
  url: string;
  /** lua-resty-auto-ssl's own `prefix` option (keys `P:<domain>:latest`); absent: none. */
  prefix?: string | undefined;
  issuer: IssuerRef;
  /** Keys per SCAN page (and MGET); default 1,000. */
  pageSize?: number;
}

/** The Redis key lua-resty-auto-ssl stores a domain's certificate under. */
export function autoSslKey(domain: string, prefix?: string): string {
  return prefix ? `${prefix}:${domain}:latest` : `${domain}:latest`;
}

/** The SCAN MATCH pattern of every `<domain>:latest` key under `prefix` (glob characters of the prefix escaped). */
export function autoSslPattern(prefix?: string): string {
  return prefix ? `${prefix.replace(/[*?[\]\\]/g, '\\$&')}:*:latest` : '*:latest';
}

/**
 * Every `<domain>:latest` entry of the source, as SourceEntry values (read, not checked). Closes
 * its connection when done or abandoned. Fails with the URL and step when Redis cannot be reached.
 */
export async function* readAutoSsl(source: AutoSslSource): AsyncGenerator<SourceEntry> {
  const client = createClient({ url: source.url, name: 'certgate-import', socket: { connectTimeout: 5_000, reconnectStrategy: false } });
  client.on('error', () => undefined); // reported by the command that fails
  try {
    await client.connect();
  } catch (err) {
    throw new Error(`import auto-ssl: cannot connect to ${redact(source.url)} (step: connect): ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  try {
    const head = source.prefix ? `${source.prefix}:` : '';
    let cursor = '0';
    do {
      const reply = (await client.sendCommand(['SCAN', cursor, 'MATCH', autoSslPattern(source.prefix), 'COUNT', String(source.pageSize ?? 1_000)])) as [string, string[]];
      cursor = String(reply[0]);
      const page = reply[1];
      if (page.length === 0) continue;
      const values = (await client.sendCommand(['MGET', ...page])) as Array<string | null>;
      for (let i = 0; i < page.length; i++) {
        const key = page[i]!;
        const value = values[i];
        if (value === null || value === undefined) continue; // deleted since the SCAN
        yield entryOf(key, key.slice(head.length, -':latest'.length), value, source.issuer);
      }
    } while (cursor !== '0');
  } finally {
    await client.close().catch(() => client.destroy());
  }
}

/** One stored value as a SourceEntry (a value that is not auto-ssl's JSON is unreadable). */
function entryOf(key: string, name: string, value: string, issuer: IssuerRef): SourceEntry {
  let data: { fullchain_pem?: unknown; privkey_pem?: unknown; cert_pem?: unknown };
  try {
    data = JSON.parse(value) as typeof data;
  } catch {
    return { source: key, name, issuer, problem: 'the value is not JSON' };
  }
  // fullchain_pem is what auto-ssl serves; cert_pem (the leaf alone) only when it is missing.
  const certPem = typeof data.fullchain_pem === 'string' ? data.fullchain_pem : typeof data.cert_pem === 'string' ? data.cert_pem : undefined;
  const keyPem = typeof data.privkey_pem === 'string' ? data.privkey_pem : undefined;
  if (certPem === undefined || keyPem === undefined) return { source: key, name, issuer, problem: 'no fullchain_pem or privkey_pem' };
  return { source: key, name, certPem, keyPem, issuer };
}

function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'the Redis URL';
  }
}
