// The dns-01 propagation check: a TXT value a provider accepted is only worth telling the CA about
// once every server the CA may ask answers it (the CA asks an authoritative server of the zone;
// one that lags fails the authorization and spends the CA's failed-validation limit).
//   1. whom to ask: `acme.dns.resolvers` when set; else the zone's authoritative servers, found by
//      walking up the labels of the name until one has NS records, and resolving those hosts
//   2. ask each of them for the TXT records at the name, directly (a new resolver per round, so
//      no answer is served from a cache)
//   3. done when every one answers the value; else wait (500 ms, doubling to 2 s) and ask again
//   4. past the time-out: a DnsProviderError with step `propagation` and what each server answered
import type { Resolver } from 'node:dns/promises';
import { isIP } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { createResolver } from '../../net/resolver.ts';
import { DnsProviderError } from './provider.ts';

/** How the check asks and how long it waits. */
export interface PropagationOptions {
  /** "ip", "ip:port" or "[v6]:port" to ask instead of the zone's authoritative servers. */
  resolvers?: readonly string[];
  /** Give up after this long (acme.dns.propagationTimeout). */
  timeoutMs: number;
  /** Ends the wait early (the order's attempt ended); rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Who finds the authoritative servers (the system's when empty or left out). */
  systemResolvers?: readonly string[];
  /** First wait between rounds, doubling up to maxIntervalMs. Default 500 ms. */
  intervalMs?: number;
  /** Default 2 s. */
  maxIntervalMs?: number;
  /** The provider named in errors. */
  provider: string;
}

/** One query's time-out; two tries so one lost UDP packet is not a miss. */
const QUERY_TIMEOUT_MS = 2_000;

/**
 * Resolves once every server answers `value` among the TXT records at `fqdn` (other values may be
 * there too: concurrent orders). Throws a DnsProviderError with step `zone` when no authoritative
 * server can be found, and with step `propagation` on the time-out, naming what each answered.
 */
export async function waitForPropagation(fqdn: string, value: string, opts: PropagationOptions): Promise<void> {
  const deadline = performance.now() + opts.timeoutMs;
  const servers = opts.resolvers && opts.resolvers.length > 0 ? [...opts.resolvers] : await authoritativeServers(fqdn, opts);
  let wait = opts.intervalMs ?? 500;
  for (;;) {
    opts.signal?.throwIfAborted();
    const answers = await Promise.all(servers.map((server) => askTxt(server, fqdn)));
    if (answers.every((a) => a.values?.includes(value) === true)) return;
    const left = deadline - performance.now();
    if (left <= 0) {
      const said = servers.map((s, i) => `${s}: ${describeAnswer(answers[i]!)}`).join('; ');
      throw new DnsProviderError(`TXT ${value} at ${fqdn} not answered by every server after ${opts.timeoutMs} ms (${said})`, 'propagation', opts.provider);
    }
    await sleep(Math.min(wait, left), undefined, opts.signal ? { signal: opts.signal } : {});
    wait = Math.min(wait * 2, opts.maxIntervalMs ?? 2_000);
  }
}

interface TxtAnswer {
  values?: string[];
  error?: string;
}

/** The TXT values at `fqdn` as `server` answers them now (multi-string records joined, RFC 8555 §8.4 values are one string). */
async function askTxt(server: string, fqdn: string): Promise<TxtAnswer> {
  const resolver = createResolver([server], { timeoutMs: QUERY_TIMEOUT_MS });
  try {
    return { values: (await resolver.resolveTxt(fqdn)).map((chunks) => chunks.join('')) };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENODATA' || code === 'ENOTFOUND') return { values: [] };
    return { error: code ?? String(err) };
  }
}

function describeAnswer(a: TxtAnswer): string {
  if (a.error !== undefined) return a.error;
  return a.values!.length === 0 ? 'no TXT' : a.values!.map((v) => JSON.stringify(v)).join(',');
}

/**
 * The addresses ("ip" on port 53) of the authoritative servers of the zone holding `fqdn`: the
 * closest enclosing name with NS records (a zone cut), asked of the system's resolvers.
 */
export async function authoritativeServers(fqdn: string, opts: Pick<PropagationOptions, 'systemResolvers' | 'provider'>): Promise<string[]> {
  const resolver = createResolver(opts.systemResolvers ?? [], { timeoutMs: QUERY_TIMEOUT_MS });
  const labels = fqdn.split('.');
  for (let i = 0; i < labels.length - 1; i++) {
    const name = labels.slice(i).join('.');
    const hosts = await resolver.resolveNs(name).catch(() => [] as string[]);
    if (hosts.length === 0) continue;
    const addresses = (await Promise.all(hosts.map((host) => addressesOf(resolver, host)))).flat();
    if (addresses.length === 0) throw new DnsProviderError(`zone ${name} of ${fqdn}: no address for its servers ${hosts.join(', ')}`, 'zone', opts.provider);
    return [...new Set(addresses)];
  }
  throw new DnsProviderError(`no zone with NS records found above ${fqdn}`, 'zone', opts.provider);
}

async function addressesOf(resolver: Resolver, host: string): Promise<string[]> {
  if (isIP(host) !== 0) return [host];
  const [v4, v6] = await Promise.all([resolver.resolve4(host).catch(() => []), resolver.resolve6(host).catch(() => [])]);
  return [...v4, ...v6.map((a) => `[${a}]:53`)];
}
