// What a validated config means, in words, for the operator: `certgate validate` prints it, and
// `certgate run` logs the start-up warnings. Loaded only by those two commands (src/cli.ts).
//
//   1. patternsOf          every host pattern written in onDemand.allow and proxy.routes, with
//                          the key it sits at
//   2. describePattern     what one pattern matches ("*.x.test: one label below x.test")
//   3. wildcardWarnings    one line per distinct `*.` pattern: it meant any depth before issue 13
//   4. redactSecrets       a copy with every secret replaced by "[redacted]"
//   5. formatValidation    the whole `certgate validate` output: 2 and 3 as text, then 4 as JSON
import { splitPattern } from '../net/patterns.ts';
import type { Config } from './schema.ts';

/** What validate prints in place of a secret. */
export const REDACTED = '[redacted]';

/** A host pattern as written in the config, and the key it sits at (e.g. "onDemand.allow[0]"). */
export interface WrittenPattern {
  key: string;
  pattern: string;
}

/** 1. Every pattern in onDemand.allow, then in proxy.routes[].hosts, in file order. */
export function patternsOf(config: Pick<Config, 'onDemand' | 'proxy'>): WrittenPattern[] {
  const out: WrittenPattern[] = config.onDemand.allow.map((pattern, i) => ({ key: `onDemand.allow[${i}]`, pattern }));
  config.proxy.routes.forEach((route, r) => route.hosts.forEach((pattern, h) => out.push({ key: `proxy.routes[${r}].hosts[${h}]`, pattern })));
  return out;
}

/** 2. One line saying what `pattern` matches, e.g. "*.x.test: one label below x.test (a.x.test, not a.b.x.test)". */
export function describePattern(pattern: string): string {
  const { kind, rest } = splitPattern(pattern);
  switch (kind) {
    case 'one-label':
      return `${pattern}: one label below ${rest} (a.${rest}, not a.b.${rest} nor ${rest})`;
    case 'any-depth':
      return `${pattern}: any depth below ${rest} (a.${rest}, a.b.${rest}, not ${rest})`;
    case 'exact':
      return `${pattern}: that name only`;
  }
}

/**
 * 3. One warning per distinct `*.` pattern, naming every key it sits at: before issue 13 `*.`
 * matched any depth, so a config written then may now deny or mis-route deeper names. The
 * caller logs them once per process, at start.
 */
export function wildcardWarnings(config: Pick<Config, 'onDemand' | 'proxy'>): Array<{ pattern: string; keys: string[]; message: string }> {
  const keysOf = new Map<string, string[]>();
  for (const { key, pattern } of patternsOf(config)) {
    if (splitPattern(pattern).kind !== 'one-label') continue;
    const keys = keysOf.get(pattern) ?? [];
    keys.push(key);
    keysOf.set(pattern, keys);
  }
  return [...keysOf].map(([pattern, keys]) => {
    const suffix = splitPattern(pattern).rest;
    return {
      pattern,
      keys,
      message: `${pattern} (${keys.join(', ')}) now matches exactly one label below ${suffix} (a.${suffix}, not a.b.${suffix}); write **.${suffix} for any depth, which is what *. meant before`,
    };
  });
}

// Keys whose value is a secret wherever they appear: admin.token, acme.eab.hmac,
// acme.issuers[].eab.hmac, storage.redis.sentinel.password, and any key spelled like them.
const SECRET_KEY = /(?:token|hmac|password|passwd|secret)$/i;
// Query parameters that commonly carry credentials (e.g. an ask URL with ?token=...).
const SECRET_QUERY = /([?&][^=&#]*(?:token|secret|pass|key|auth|sig)[^=&#]*=)[^&#]*/gi;
const URL_SCHEME = /^[a-z][a-z0-9+.-]*:\/\//i;
const URL_AUTHORITY = /^([a-z][a-z0-9+.-]*:\/\/)([^/?#]*)@/i;

/**
 * 4. A deep copy of `value` with secrets replaced by REDACTED: values of secret keys (see
 * SECRET_KEY), passwords in URLs (`redis://:pw@host` → `redis://:[redacted]@host`; user-only
 * credentials such as `https://token@host` go whole) and credential-like query parameters.
 * Everything else is copied as is.
 */
export function redactSecrets(value: unknown, key = ''): unknown {
  if (typeof value === 'string') return SECRET_KEY.test(key) ? REDACTED : redactUrl(value);
  if (Array.isArray(value)) return value.map((v) => redactSecrets(v, key));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = SECRET_KEY.test(k) && v !== undefined && v !== null ? REDACTED : redactSecrets(v, k);
    return out;
  }
  return value;
}

function redactUrl(text: string): string {
  if (!URL_SCHEME.test(text)) return text;
  const redacted = text.replace(SECRET_QUERY, `$1${REDACTED}`);
  const m = URL_AUTHORITY.exec(redacted);
  if (m === null) return redacted;
  // The authority's last '@' ends the user info, as URL parsers read it: 'a:p@ss@host'.
  const userinfo = m[2]!;
  const colon = userinfo.indexOf(':');
  const user = colon === -1 ? REDACTED : `${userinfo.slice(0, colon)}:${REDACTED}`;
  return `${m[1]}${user}@${redacted.slice(m[0].length)}`;
}

/** 5. The text `certgate validate` prints for a valid config (ends with a newline). */
export function formatValidation(config: Config & { file?: string }): string {
  const lines = [`${config.file ?? 'config'}: valid`];
  for (const w of wildcardWarnings(config)) lines.push(`warning: ${w.message}`);
  const patterns = patternsOf(config);
  if (patterns.length > 0) {
    lines.push('host patterns:');
    for (const { key, pattern } of patterns) lines.push(`  ${key}  ${describePattern(pattern)}`);
  }
  lines.push(JSON.stringify(redactSecrets(config), null, 2));
  return lines.join('\n') + '\n';
}
