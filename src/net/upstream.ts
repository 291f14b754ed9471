// Upstream origins as bindings, routes and `proxy.upstream` name them: parsed once into what a
// connection needs (host, port, TLS, SNI). Used by the proxy, the domain registry and the admin
// API, so it sits below all three.
import { isIP } from 'node:net';
import { normalizeServerName } from './names.ts';

/** A parsed upstream origin; one shared instance per origin in a table. */
export interface UpstreamTarget {
  /** Normalised origin, e.g. 'http://127.0.0.1:8080' (the default port is dropped). */
  readonly origin: string;
  readonly secure: boolean;
  /** Host name or IP to connect to, IPv6 without brackets. */
  readonly hostname: string;
  readonly port: number;
  /** TLS server name (SNI) for https upstreams: the host name, or undefined for IP literals. */
  readonly servername: string | undefined;
}

/** Parse and validate an upstream URL. Throws a descriptive Error when it is not usable. */
export function parseUpstream(upstream: string): UpstreamTarget {
  let url: URL;
  try {
    url = new URL(upstream);
  } catch {
    throw new Error(`invalid upstream ${JSON.stringify(upstream)}: not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new Error(`invalid upstream ${JSON.stringify(upstream)}: scheme must be http or https`);
  }
  if (url.username !== '' || url.password !== '') {
    throw new Error(`invalid upstream ${JSON.stringify(upstream)}: credentials are not supported`);
  }
  if ((url.pathname !== '/' && url.pathname !== '') || url.search !== '' || url.hash !== '') {
    throw new Error(`invalid upstream ${JSON.stringify(upstream)}: must be an origin without path or query`);
  }
  if (url.hostname === '') {
    throw new Error(`invalid upstream ${JSON.stringify(upstream)}: missing host`);
  }
  const secure = url.protocol === 'https:';
  const hostname = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  const port = url.port === '' ? (secure ? 443 : 80) : Number(url.port);
  return {
    origin: url.origin,
    secure,
    hostname,
    port,
    servername: isIP(hostname) === 0 ? hostname : undefined,
  };
}

// Upstream templates (`proxy.upstream`, `proxy.routes[].upstream`): `{host}` (the request's
// normalised host) and `{tenant}` (the domain binding's tenant) in the host name only, e.g.
// 'http://{tenant}.deployments.internal:9011'. Expanded per request; the result must be a DNS
// host name (net/names.ts rules), and a tenant must be one DNS label, so a tenant value cannot
// reach into another tenant's part of the namespace.
const PLACEHOLDER = /\{([^{}]*)\}/g;
const PLACEHOLDERS = new Set(['host', 'tenant']);
const TENANT_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/** What an upstream template needs to be expanded for one request. */
export interface UpstreamTemplate {
  /** The template as configured, normalised like an origin ('http://{tenant}.apps.internal:9011'). */
  readonly origin: string;
  readonly needsTenant: boolean;
  /** Expands it: a target, or why not (for a 502 body and its log line). */
  expand(values: { host: string; tenant: string | undefined }): UpstreamTarget | { problem: string };
}

/**
 * Parses an upstream URL that may be a template ('{host}', '{tenant}' in the host name only).
 * Returns undefined when `upstream` has no '{' (parse it with parseUpstream); throws a
 * descriptive Error for a malformed template.
 */
export function parseUpstreamTemplate(upstream: string): UpstreamTemplate | undefined {
  if (!upstream.includes('{') && !upstream.includes('}')) return undefined;
  const m = /^(https?):\/\/([^/:?#@[\]]+)(?::(\d{1,5}))?\/?$/i.exec(upstream);
  if (!m) throw new Error(`invalid upstream ${JSON.stringify(upstream)}: a template may use {host} and {tenant} in the host name only, like "http://{tenant}.deployments.internal:9011"`);
  const scheme = m[1]!.toLowerCase();
  const hostTemplate = m[2]!.toLowerCase();
  const names = [...hostTemplate.matchAll(PLACEHOLDER)].map((p) => p[1]!);
  const unknown = names.find((name) => !PLACEHOLDERS.has(name));
  if (unknown !== undefined) throw new Error(`invalid upstream ${JSON.stringify(upstream)}: unknown placeholder {${unknown}} (only {host} and {tenant})`);
  // With every placeholder replaced by a plain label, what is left must be a valid origin.
  const sample = hostTemplate.replace(PLACEHOLDER, 'x');
  if (sample.includes('{') || sample.includes('}') || normalizeServerName(sample) === undefined) {
    throw new Error(`invalid upstream ${JSON.stringify(upstream)}: the host name must be a DNS name around its placeholders, like "{tenant}.deployments.internal"`);
  }
  const suffix = m[3] === undefined ? '' : `:${m[3]}`;
  parseUpstream(`${scheme}://${sample}${suffix}`);
  const origin = `${scheme}://${hostTemplate}${suffix}`;
  return {
    origin,
    needsTenant: names.includes('tenant'),
    expand({ host, tenant }) {
      if (names.includes('tenant')) {
        if (tenant === undefined) return { problem: 'the route needs a tenant ({tenant}) and the domain binding for this host has none' };
        if (!TENANT_LABEL.test(tenant.toLowerCase())) return { problem: `tenant ${JSON.stringify(tenant)} is not one DNS label` };
      }
      const hostname = hostTemplate.replace(PLACEHOLDER, (_all, name: string) => (name === 'host' ? host : tenant!.toLowerCase()));
      if (normalizeServerName(hostname) === undefined) return { problem: `the upstream host name ${JSON.stringify(hostname)} is not a valid DNS name` };
      return parseUpstream(`${scheme}://${hostname}${suffix}`);
    },
  };
}
