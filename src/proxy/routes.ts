// Host → upstream routing table. Built once per setRoutes() and swapped atomically; lookups are
// one Map probe for the exact name, one for '*.parent' and one per label for '**.suffix'
// patterns, so the cost does not depend on the number of routes.
import { isIP } from 'node:net';
import { domainToASCII } from 'node:url';
import { HostPatternMap, splitPattern } from '../net/patterns.ts';
import { parseUpstream, parseUpstreamTemplate, type UpstreamTarget, type UpstreamTemplate } from '../net/upstream.ts';

export { parseUpstream, type UpstreamTarget, type UpstreamTemplate };

/** Where a configured route goes: a fixed origin, or a template expanded per request ({host}, {tenant}). */
export type RouteUpstream = UpstreamTarget | UpstreamTemplate;

/** True when `upstream` is a template (expand it per request before connecting). */
export function isTemplate(upstream: RouteUpstream): upstream is UpstreamTemplate {
  return 'expand' in upstream;
}

/** One `proxy.routes[]` entry: hosts (exact or wildcard) and the upstream they go to. */
export interface ProxyRoute {
  /**
   * Exact host names ('app.example.org') or wildcard patterns: '*.example.org' (one label below
   * it) or '**.example.org' (any depth below it); neither matches 'example.org' itself.
   */
  hosts: string[];
  /**
   * 'http://host:port' or 'https://host:port'; no path, query or credentials. The host name may
   * hold `{host}` and `{tenant}` (a template, see net/upstream.ts).
   */
  upstream: string;
}

/**
 * Per-host upstreams that change at run time (the domain registry). A match here wins over the
 * configured routes: it names one exact host, set by the platform for that customer. undefined:
 * no opinion (configured routes, then the default upstream, apply). May answer with a promise
 * when the answer is not in memory.
 */
export interface DynamicRoutes {
  lookup(host: string): UpstreamTarget | undefined | Promise<UpstreamTarget | undefined>;
  /**
   * The tenant of the host's binding (for `{tenant}` templates), undefined when it has none or is
   * not bound; a promise when not in memory. Asked only after lookup() for the same host.
   */
  tenant?(host: string): string | undefined | Promise<string | undefined>;
}

/**
 * Normalise a Host header value (or a configured host name) for lookups: lower-case, port
 * removed, one trailing dot removed. IPv6 literals come back in canonical bracketed form
 * ('[::1]'), whether given as '[::1]:8443', '[0:0::1]' or bare '::1'. Returns '' for an empty
 * or malformed value.
 */
export function normalizeHost(host: string): string {
  if (host.length === 0) return '';
  if (host.charCodeAt(0) === 91 /* '[' */) {
    const end = host.indexOf(']');
    if (end === -1) return '';
    return canonicalIPv6(host.slice(1, end));
  }
  const colon = host.indexOf(':');
  if (colon !== -1) {
    // A second colon means a bare IPv6 literal (not valid in a Host header, but cheap to accept).
    if (host.indexOf(':', colon + 1) !== -1) return canonicalIPv6(host);
    host = host.slice(0, colon);
  }
  let end = host.length;
  if (end > 0 && host.charCodeAt(end - 1) === 46 /* '.' */) end--;
  if (end !== host.length) host = host.slice(0, end);
  return host.toLowerCase();
}

function canonicalIPv6(literal: string): string {
  if (isIP(literal) !== 6) return '';
  try {
    return new URL(`http://[${literal}]/`).hostname.toLowerCase();
  } catch {
    return '';
  }
}

/** Normalise a configured exact name; IDNs become punycode, as clients send them. */
function normalizeConfiguredName(name: string): string {
  const host = normalizeHost(name.trim());
  if (host === '') return '';
  if (host.startsWith('[')) return host;
  if (host.includes('*')) return '';
  return isPlainAsciiName(host) ? host : domainToASCII(host);
}

/** Lower-case letters, digits, '-', '_' and non-empty dot-separated labels: no IDN conversion needed. */
function isPlainAsciiName(name: string): boolean {
  let labelLength = 0;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c === 46 /* '.' */) {
      if (labelLength === 0) return false;
      labelLength = 0;
    } else if ((c >= 97 && c <= 122) || (c >= 48 && c <= 57) || c === 45 || c === 95) {
      labelLength++;
    } else {
      return false;
    }
  }
  return labelLength > 0 && !name.startsWith('xn--') && !name.includes('.xn--');
}

/** The configured routes: exact hosts first, then the most specific wildcard, then the default upstream. */
export class RouteTable {
  readonly #hosts = new HostPatternMap<RouteUpstream>();
  readonly #default: RouteUpstream | undefined;
  /** Every origin (or template) this table can route to, keyed by origin. */
  readonly targets = new Map<string, RouteUpstream>();

  /** Throws (without side effects) when a route or the default upstream is invalid. */
  constructor(routes: readonly ProxyRoute[], defaultUpstream?: string) {
    const byText = new Map<string, RouteUpstream>();
    const intern = (upstream: string): RouteUpstream => {
      const seen = byText.get(upstream);
      if (seen !== undefined) return seen;
      const parsed = parseUpstreamTemplate(upstream) ?? parseUpstream(upstream);
      const target = this.targets.get(parsed.origin) ?? parsed;
      this.targets.set(parsed.origin, target);
      byText.set(upstream, target);
      return target;
    };
    for (const route of routes) {
      const target = intern(route.upstream);
      for (const pattern of route.hosts) {
        // `*.suffix`: one label below it; `**.suffix`: any depth (src/net/patterns.ts).
        const { kind, rest } = splitPattern(pattern);
        const name = normalizeConfiguredName(rest);
        if (name === '' || (kind !== 'exact' && name.startsWith('['))) {
          throw new Error(`invalid host ${kind === 'exact' ? 'name' : 'pattern'} ${JSON.stringify(pattern)}`);
        }
        // Routes are matched in order: the first route naming a pattern wins.
        this.#hosts.add(name, kind, target);
      }
    }
    this.#default = defaultUpstream === undefined ? undefined : intern(defaultUpstream);
  }

  get size(): number {
    return this.#hosts.size;
  }

  get defaultTarget(): RouteUpstream | undefined {
    return this.#default;
  }

  /** `host` must already be normalised (see normalizeHost). */
  lookup(host: string): RouteUpstream | undefined {
    return (host !== '' ? this.#hosts.lookup(host) : undefined) ?? this.#default;
  }
}
