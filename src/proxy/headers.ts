// Header rewriting for the forward (client → upstream) and return (upstream → client) paths.
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { CidrSet } from '../net/cidr.ts';
import { clientAddress } from '../net/client-address.ts';

/** RFC 9110 §7.6.1 connection-specific fields, plus Proxy-Connection and the proxy auth pair. */
const HOP_BY_HOP = [
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'proxy-authenticate',
  'proxy-authorization',
];

/**
 * Request fields never copied verbatim: hop-by-hop ones, fields the proxy sets itself (host,
 * content-length, x-forwarded-*, x-real-ip), Expect (Node already answered 100-continue; undici
 * refuses the field), HTTP2-Settings (connection-specific, RFC 9113 §3.2.1: an h2c upgrade
 * never reaches an upstream) and a client's Forwarded (RFC 7239): an upstream reading its
 * first `for=` would trust whatever the client wrote, and the proxy has no trusted hops to
 * append to it yet.
 */
const SKIP_REQUEST = new Set([
  ...HOP_BY_HOP,
  'host',
  'content-length',
  'expect',
  'http2-settings',
  'forwarded',
  'x-real-ip',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
]);

const SKIP_RESPONSE = new Set(HOP_BY_HOP);

/** Lower-cased tokens of a Connection field other than the usual close/keep-alive/upgrade. */
function connectionOptions(value: string | string[] | undefined): Set<string> | null {
  if (value === undefined) return null;
  const text = Array.isArray(value) ? value.join(',') : value;
  let found: Set<string> | null = null;
  for (const part of text.split(',')) {
    const token = part.trim().toLowerCase();
    if (token === '' || token === 'close' || token === 'keep-alive' || token === 'upgrade') continue;
    (found ??= new Set()).add(token);
  }
  return found;
}

/** A field's value with repeats joined by ', ' (Node already joins most repeated fields so). */
function joined(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}

/** True when the request came over TLS. */
export function isEncrypted(req: IncomingMessage): boolean {
  return (req.socket as { encrypted?: boolean }).encrypted === true;
}

/**
 * Headers to send upstream, as a flat [name, value, ...] list keeping the client's spelling and
 * repeated fields. The original Host is kept; X-Forwarded-Host is replaced, X-Real-IP is the
 * client address (src/net/client-address.ts: the PROXY header's, else the peer's), and a client's
 * Forwarded is dropped. X-Forwarded-For and X-Forwarded-Proto from a client inside `trusted`
 * (`proxy.trustedProxies`) are kept, the client address appended to X-Forwarded-For; from anyone
 * else they are replaced (the client could write anything there). With `upgrade`,
 * Connection: Upgrade and the Upgrade field are kept (for the raw tunnel path).
 */
export function forwardRequestHeaders(req: IncomingMessage, upgrade: boolean, trusted?: CidrSet): string[] {
  const raw = req.rawHeaders;
  const headers = req.headers;
  const extra = connectionOptions(headers.connection);
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const lower = name.toLowerCase();
    if (SKIP_REQUEST.has(lower)) continue;
    if (extra !== null && extra.has(lower)) continue;
    if (lower.charCodeAt(0) === 58 /* ':' HTTP/2 pseudo-header */) continue;
    out.push(name, raw[i + 1]!);
  }
  const host = headers.host;
  if (host !== undefined) out.push('host', host);
  if (upgrade) {
    out.push('connection', 'Upgrade');
    const upgradeTo = headers.upgrade;
    if (upgradeTo !== undefined) out.push('upgrade', Array.isArray(upgradeTo) ? upgradeTo.join(', ') : upgradeTo);
  } else {
    const length = headers['content-length'];
    if (length !== undefined && headers['transfer-encoding'] === undefined) out.push('content-length', length);
  }
  const ip = clientAddress(req.socket);
  const fromProxy = trusted?.has(ip) === true;
  const prior = fromProxy ? joined(headers['x-forwarded-for']) : undefined;
  if (ip !== undefined) out.push('x-forwarded-for', prior ? `${prior}, ${ip}` : ip);
  else if (prior) out.push('x-forwarded-for', prior);
  if (ip !== undefined) out.push('x-real-ip', ip);
  const proto = fromProxy ? joined(headers['x-forwarded-proto']) : undefined;
  out.push('x-forwarded-proto', proto || (isEncrypted(req) ? 'https' : 'http'));
  if (host !== undefined) out.push('x-forwarded-host', host);
  return out;
}

/**
 * Response headers to pass to the client, as a flat list for res.writeHead(). `raw` is undici's
 * raw header list (Buffers or strings, names in the upstream's spelling, repeated Set-Cookie kept);
 * `parsed` is the parsed form, used for the Connection field and as a fallback.
 */
export function returnResponseHeaders(
  raw: readonly (Buffer | string)[] | IncomingHttpHeaders | null | undefined,
  parsed: IncomingHttpHeaders,
): string[] {
  const extra = connectionOptions(parsed.connection);
  const out: string[] = [];
  if (Array.isArray(raw)) {
    for (let i = 0; i + 1 < raw.length; i += 2) {
      const name = raw[i]!;
      const nameText = typeof name === 'string' ? name : name.toString('latin1');
      const lower = nameText.toLowerCase();
      if (SKIP_RESPONSE.has(lower)) continue;
      if (extra !== null && extra.has(lower)) continue;
      const value = raw[i + 1]!;
      // latin1 keeps the upstream's bytes as they were; Node writes headers back as latin1.
      out.push(nameText, typeof value === 'string' ? value : value.toString('latin1'));
    }
    return out;
  }
  for (const [name, value] of Object.entries(parsed)) {
    const lower = name.toLowerCase();
    if (value === undefined || SKIP_RESPONSE.has(lower)) continue;
    if (extra !== null && extra.has(lower)) continue;
    if (Array.isArray(value)) for (const v of value) out.push(name, v);
    else out.push(name, value);
  }
  return out;
}

/** True when a request announces a body: any Transfer-Encoding, or a Content-Length other than 0. */
export function hasRequestBody(headers: IncomingHttpHeaders): boolean {
  const length = headers['content-length'];
  return headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/**
 * True when a body follows the request's head: over HTTP/2 unless its HEADERS frame ended the
 * stream (h2 needs no length field); over HTTP/1.x as hasRequestBody says.
 */
export function requestHasBody(req: IncomingMessage): boolean {
  if (req.httpVersionMajor === 2) return (req as { stream?: { endAfterHeaders?: boolean } }).stream?.endAfterHeaders === false;
  return hasRequestBody(req.headers);
}

/** A request target split for forwarding; see parseRequestTarget. */
export interface RequestTarget {
  /** Origin-form path and query to send upstream, e.g. '/chat?room=1'. */
  path: string;
  /** For an absolute-form target ('http://a.example/x'): its host[:port] as the URL parser gives it (lower-case, no default port). */
  authority?: string;
}

/**
 * The path to request upstream: origin-form as is, absolute-form (http/https, any case) reduced
 * to path + query with its authority returned apart. undefined for anything else (authority-form,
 * asterisk-form, unparsable URLs): the caller answers 400.
 */
export function parseRequestTarget(url: string | undefined): RequestTarget | undefined {
  if (url === undefined || url === '') return undefined;
  if (url.charCodeAt(0) === 47 /* '/' */) return { path: url };
  const scheme = url.slice(0, 8).toLowerCase();
  if (scheme.startsWith('http://') || scheme === 'https://') {
    try {
      const parsed = new URL(url);
      return { path: parsed.pathname + parsed.search, authority: parsed.host };
    } catch {
      return undefined;
    }
  }
  return undefined;
}
