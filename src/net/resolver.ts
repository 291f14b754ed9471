// DNS queries for the checks that resolve names themselves (policy/dns.ts: ownership,
// issuance/preflight.ts: self-check, acme/dns: propagation and DCV delegation): a node:dns
// Resolver on the configured servers, and the rule that "no such name" and "no records of this
// type" are an empty answer, not an error. What any other error means is each caller's business.
import { Resolver } from 'node:dns/promises';

/** A resolver asking `servers` ("ip", "ip:port", "[v6]:port"; empty = the system's). */
export function createResolver(servers: readonly string[], { timeoutMs, tries = 2 }: { timeoutMs: number; tries?: number }): Resolver {
  // tries: 2 so one lost UDP packet is not a failure; the whole lookup stays bounded.
  const resolver = new Resolver({ timeout: timeoutMs, tries });
  if (servers.length > 0) resolver.setServers([...servers]);
  return resolver;
}

/** Error codes that say the name (or the record type) does not exist, not that DNS failed. */
const NO_ANSWER = new Set(['ENOTFOUND', 'ENODATA']);

/** The answer of one query, [] when there is none (ENOTFOUND, ENODATA); other errors are rethrown as they are. */
export async function answerOf<T>(query: Promise<T[]>): Promise<T[]> {
  try {
    return await query;
  } catch (err) {
    if (NO_ANSWER.has((err as NodeJS.ErrnoException).code ?? '')) return [];
    throw err;
  }
}
