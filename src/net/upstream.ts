// Upstream origins as bindings, routes and `proxy.upstream` name them: parsed once into what a
// connection needs (host, port, TLS, SNI). Used by the proxy, the domain registry and the admin
// API, so it sits below all three.
import { isIP } from 'node:net';

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
