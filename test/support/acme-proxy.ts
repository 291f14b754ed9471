// An HTTPS proxy in front of a real Pebble. For tests it injects what Debian's Pebble 2.4 lacks:
// ARI (RFC 9773 renewalInfo), profiles (meta.profiles), rate limits (429/503 with Retry-After).
// For the bench it records every exchange at the wire, timed and attributed to the domain whose
// order it belongs to (Pebble logs with one-second resolution, too coarse for a ~0.5 s issuance).
// Everything a test does not ask for passes through unchanged. Pebble builds its URLs from the
// Host header, which is passed through, so every URL in directory, orders and authorizations
// points back at the proxy. The proxy serves Pebble's own listener certificate (for 127.0.0.1,
// signed by the listener CA at `listenerCaPath`), so whatever trusts Pebble trusts the proxy.
//
//   const proxy = await startAcmeProxy(pebble);            // a PebbleHandle or {directoryUrl, listenerCaPath}
//   proxy.setProfiles({ tlsserver: '...', shortlived: '...' });
//   proxy.setRenewalInfo((certId) => ({ start, end, retryAfterSeconds: 60 }));
//   proxy.failNext('newOrder', 3, { status: 429, retryAfterSeconds: 5 });
//   proxy.delayAlways('finalize', 10_000);                // a slow CA: answers held 10 s
//   proxy.rejectForeignReplaces(true);                     // like a real CA: `replaces` must name one of its certificates
//   ... proxy.newOrders()  // [{ identifiers, replaces, profile, status, ... }]
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { Pool } from 'undici';
import { ariCertId } from '../../src/acme/plumbing/ari.ts';

/** What a request is, from Pebble's URL paths (Pebble 2.4) and the proxy's own renewalInfo path. */
export type AcmeRequestKind =
  | 'directory'
  | 'newNonce'
  | 'newAccount'
  | 'newOrder'
  | 'order'
  | 'authz'
  | 'challenge'
  | 'finalize'
  | 'certificate'
  | 'revokeCert'
  | 'keyChange'
  | 'renewalInfo'
  | 'other';

/** Path of the renewalInfo resource the proxy adds (GET <renewalInfo>/<certID>). */
export const RENEWAL_INFO_PATH = '/renewal-info';

export interface RenewalInfoAnswer {
  start: Date | string;
  end: Date | string;
  explanationURL?: string;
  /** Sent as Retry-After (seconds). Omitted when undefined. */
  retryAfterSeconds?: number;
}

/** Answer for one certID; undefined → 404 (the CA does not know this certificate). */
export type RenewalInfoSource = (certId: string) => RenewalInfoAnswer | undefined;

export interface InjectedFault {
  /** 429 (rateLimited) or 503 (serverInternal / down for maintenance); any status works. */
  status: number;
  /** Sent as Retry-After (seconds). Omitted when undefined. */
  retryAfterSeconds?: number;
  /** ACME problem type; default by status (rateLimited for 429, serverInternal otherwise). */
  type?: string;
  detail?: string;
}

export interface NewOrderRecord {
  /** Identifier values of the order. */
  domains: string[];
  replaces?: string;
  profile?: string;
  /** The whole decoded JWS payload. */
  payload: Record<string, unknown>;
  /** Status the client got (201 from Pebble, or the injected fault's). */
  status: number;
  injected: boolean;
  at: number;
}

export interface AcmeExchangeRecord {
  kind: AcmeRequestKind;
  method: string;
  path: string;
  status: number;
  injected: boolean;
  /** Date.now() when the request arrived. */
  at: number;
  /** performance.now() when the request arrived and when its answer was written. */
  t0: number;
  t1: number;
  /** Pebble's answer time (0 for an answer the proxy made itself). */
  caMs: number;
  /** The identifier of the order this request belongs to (newOrder payload, then its URLs). */
  domain?: string;
}

export interface AcmeFaultProxy {
  /** The proxy's directory URL: use it as acme.directory. */
  directoryUrl: string;
  /** 'https://127.0.0.1:<port>' */
  origin: string;
  /** The listener CA the proxy's certificate chains to (same file as Pebble's). */
  listenerCaPath: string;
  /** Advertise meta.profiles in the directory (undefined: stop advertising). */
  setProfiles(profiles: Record<string, string> | undefined): void;
  /** Advertise renewalInfo in the directory and answer GETs from `source` (undefined: stop). */
  setRenewalInfo(source: RenewalInfoSource | undefined): void;
  /** The next `count` requests of `kind` (matching `when`, if given) get `fault` instead of reaching Pebble. */
  failNext(kind: AcmeRequestKind, count: number, fault: InjectedFault, when?: (path: string) => boolean): void;
  /** Every request of `kind` gets `fault` until cleared with `failAlways(kind, undefined)`. */
  failAlways(kind: AcmeRequestKind, fault: InjectedFault | undefined): void;
  /**
   * A slow CA: every request of `kind` is held `ms` before it is forwarded (or faulted), until
   * cleared with `delayAlways(kind, undefined)`. Keep `ms` under the client's 30 s request timeout.
   */
  delayAlways(kind: AcmeRequestKind, ms: number | undefined): void;
  /**
   * When on, a newOrder whose `replaces` names a certificate not downloaded through this proxy
   * (another CA's) is refused with 404 malformed, as Let's Encrypt refuses an unknown certificate.
   */
  rejectForeignReplaces(on: boolean): void;
  /** ARI certificate IDs of the certificates downloaded through this proxy. */
  servedCertIds(): string[];
  /** newOrder requests seen, in order, with their decoded payloads. */
  newOrders(): NewOrderRecord[];
  /** newOrders that reached Pebble and were answered 201. */
  ordersPlaced(): number;
  /** certIDs asked for with GET renewalInfo, in order. */
  renewalInfoRequests(): string[];
  /** Every request, in order (the array itself; cleared by reset()). */
  exchanges(): readonly AcmeExchangeRecord[];
  /** Forgets recorded orders, renewalInfo requests and exchanges (not the configured faults). */
  reset(): void;
  close(): Promise<void>;
}

export function requestKind(method: string, path: string): AcmeRequestKind {
  const p = path.split('?')[0] ?? path;
  if (p === RENEWAL_INFO_PATH || p.startsWith(`${RENEWAL_INFO_PATH}/`)) return 'renewalInfo';
  if (p === '/dir') return 'directory';
  if (p === '/nonce-plz') return 'newNonce';
  if (p === '/sign-me-up') return 'newAccount';
  if (p === '/order-plz') return 'newOrder';
  if (p.startsWith('/my-order/')) return 'order';
  if (p.startsWith('/authZ/')) return 'authz';
  if (p.startsWith('/chalZ/')) return 'challenge';
  if (p.startsWith('/finalize-order/')) return 'finalize';
  if (p.startsWith('/certZ/')) return 'certificate';
  if (p === '/revoke-cert') return 'revokeCert';
  if (p === '/rollover-account-key') return 'keyChange';
  void method;
  return 'other';
}

function decodeJwsPayload(body: Buffer): Record<string, unknown> | undefined {
  try {
    const jws = JSON.parse(body.toString('utf8')) as { payload?: unknown };
    if (typeof jws.payload !== 'string' || jws.payload === '') return undefined;
    const payload: unknown = JSON.parse(Buffer.from(jws.payload, 'base64url').toString('utf8'));
    return payload && typeof payload === 'object' ? (payload as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function iso(d: Date | string): string {
  return typeof d === 'string' ? d : d.toISOString();
}

const HOP_BY_HOP = new Set(['transfer-encoding', 'connection', 'keep-alive', 'content-length']);

/** Every string in a JSON value that is a URL on `origin`, as a path. */
function pathsOn(value: unknown, origin: string, out: string[]): void {
  if (typeof value === 'string') {
    if (value.startsWith(origin)) out.push(value.slice(origin.length));
  } else if (Array.isArray(value)) {
    for (const v of value) pathsOn(v, origin, out);
  } else if (value && typeof value === 'object') {
    for (const v of Object.values(value)) pathsOn(v, origin, out);
  }
}

/** URLs shared by every order (directory, nonce, account, newOrder): never attributed to a domain. */
const SHARED_KINDS = new Set<AcmeRequestKind>(['directory', 'newNonce', 'newAccount', 'newOrder', 'keyChange', 'revokeCert', 'renewalInfo', 'other']);

/**
 * Starts the proxy on a free loopback port in front of `pebble.directoryUrl`. It reuses the
 * listener certificate and key startPebble wrote next to `listenerCaPath`.
 */
export async function startAcmeProxy(pebble: { directoryUrl: string; listenerCaPath: string }): Promise<AcmeFaultProxy> {
  const dir = dirname(pebble.listenerCaPath);
  const [ca, cert, key] = await Promise.all([
    readFile(pebble.listenerCaPath, 'utf8'),
    readFile(join(dir, 'listener-cert.pem'), 'utf8'),
    readFile(join(dir, 'listener-key.pem'), 'utf8'),
  ]);
  const target = new URL(pebble.directoryUrl);
  const pool = new Pool(target.origin, { connect: { ca }, connections: 64, pipelining: 1 });

  let profiles: Record<string, string> | undefined;
  let renewalInfo: RenewalInfoSource | undefined;
  const oneShot: { kind: AcmeRequestKind; left: number; fault: InjectedFault; when?: (path: string) => boolean }[] = [];
  const always = new Map<AcmeRequestKind, InjectedFault>();
  const delays = new Map<AcmeRequestKind, number>();
  let orders: NewOrderRecord[] = [];
  let renewalInfoAsked: string[] = [];
  const exchanges: AcmeExchangeRecord[] = [];
  /** Order, authorization, challenge, finalize and certificate paths → the order's domain. */
  const domainOfPath = new Map<string, string>();
  let origin = '';
  const servedCertIds = new Set<string>();
  let refuseForeignReplaces = false;

  const takeFault = (kind: AcmeRequestKind, path: string): InjectedFault | undefined => {
    const rule = oneShot.find((r) => r.kind === kind && r.left > 0 && (!r.when || r.when(path)));
    if (rule) {
      rule.left--;
      return rule.fault;
    }
    return always.get(kind);
  };

  /** A fresh nonce from Pebble, so a client that got an injected error still has one to use. */
  const freshNonce = async (): Promise<string | undefined> => {
    try {
      const res = await pool.request({ method: 'HEAD', path: '/nonce-plz' });
      await res.body.dump();
      const n = res.headers['replay-nonce'];
      return Array.isArray(n) ? n[0] : n;
    } catch {
      return undefined;
    }
  };

  const server: Server = createServer({ cert, key, keepAliveTimeout: 30_000 }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void (async () => {
        const body = Buffer.concat(chunks);
        const method = req.method ?? 'GET';
        const path = req.url ?? '/';
        const kind = requestKind(method, path);
        const at = Date.now();
        const t0 = performance.now();
        const payload = kind === 'newOrder' && method === 'POST' ? decodeJwsPayload(body) : undefined;
        const firstIdentifier = Array.isArray(payload?.identifiers) ? (payload.identifiers as { value?: unknown }[])[0]?.value : undefined;
        const domain = typeof firstIdentifier === 'string' ? firstIdentifier : domainOfPath.get(path.split('?')[0] ?? path);
        const recordOrder = (status: number, injected: boolean): void => {
          if (kind !== 'newOrder' || method !== 'POST') return;
          const ids = Array.isArray(payload?.identifiers) ? (payload.identifiers as { value?: unknown }[]) : [];
          orders.push({
            domains: ids.map((i) => String(i.value)),
            ...(typeof payload?.replaces === 'string' ? { replaces: payload.replaces } : {}),
            ...(typeof payload?.profile === 'string' ? { profile: payload.profile } : {}),
            payload: payload ?? {},
            status,
            injected,
            at,
          });
        };
        const send = (status: number, headers: Record<string, string | string[]>, text: Buffer | string, injected: boolean, caMs = 0): void => {
          const buf = typeof text === 'string' ? Buffer.from(text) : text;
          res.writeHead(status, { ...headers, 'content-length': String(buf.length) });
          // Recorded at once (a test may look as soon as its client has the answer); t1 once written.
          const record: AcmeExchangeRecord = { kind, method, path, status, injected, at, t0, t1: performance.now(), caMs, ...(domain ? { domain } : {}) };
          exchanges.push(record);
          res.end(buf, () => (record.t1 = performance.now()));
        };
        /** The URLs Pebble answered with for this domain's order (Location, JSON bodies) belong to it. */
        const attribute = (headers: Record<string, string | string[] | undefined>, text: Buffer): void => {
          if (!domain) return;
          const found: string[] = [];
          if (typeof headers.location === 'string') pathsOn(headers.location, origin, found);
          if (String(headers['content-type'] ?? '').includes('json')) {
            try {
              pathsOn(JSON.parse(text.toString('utf8')), origin, found);
            } catch {
              // not JSON after all
            }
          }
          for (const p of found) if (!SHARED_KINDS.has(requestKind('GET', p))) domainOfPath.set(p, domain);
        };

        const delay = delays.get(kind);
        if (delay !== undefined) await new Promise((resolve) => setTimeout(resolve, delay));
        const foreignReplaces = refuseForeignReplaces && typeof payload?.replaces === 'string' && !servedCertIds.has(payload.replaces);
        const fault: InjectedFault | undefined = foreignReplaces
          ? { status: 404, type: 'urn:ietf:params:acme:error:malformed', detail: `request included \`replaces\`, but this CA issued no certificate ${String(payload.replaces)}` }
          : takeFault(kind, path);
        if (fault) {
          const headers: Record<string, string> = { 'content-type': 'application/problem+json' };
          if (fault.retryAfterSeconds !== undefined) headers['retry-after'] = String(fault.retryAfterSeconds);
          const nonce = await freshNonce();
          if (nonce) headers['replay-nonce'] = nonce;
          const type = fault.type ?? `urn:ietf:params:acme:error:${fault.status === 429 ? 'rateLimited' : 'serverInternal'}`;
          recordOrder(fault.status, true);
          send(fault.status, headers, JSON.stringify({ type, detail: fault.detail ?? `injected by acme-proxy (${kind})`, status: fault.status }), true);
          return;
        }

        if (kind === 'renewalInfo') {
          const certId = decodeURIComponent((path.split('?')[0] ?? '').slice(RENEWAL_INFO_PATH.length + 1));
          renewalInfoAsked.push(certId);
          const answer = method === 'GET' && renewalInfo ? renewalInfo(certId) : undefined;
          if (!answer) {
            send(404, { 'content-type': 'application/problem+json' }, JSON.stringify({ type: 'urn:ietf:params:acme:error:malformed', detail: 'unknown certificate', status: 404 }), false);
            return;
          }
          const headers: Record<string, string> = { 'content-type': 'application/json' };
          if (answer.retryAfterSeconds !== undefined) headers['retry-after'] = String(answer.retryAfterSeconds);
          send(200, headers, JSON.stringify({
            suggestedWindow: { start: iso(answer.start), end: iso(answer.end) },
            ...(answer.explanationURL ? { explanationURL: answer.explanationURL } : {}),
          }), false);
          return;
        }

        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers[k] = v;
        try {
          const up = await pool.request({ method: method as 'GET', path, headers, body: body.length > 0 ? body : null });
          let text = Buffer.from(await up.body.arrayBuffer());
          const caMs = performance.now() - t0;
          attribute(up.headers, text);
          if (kind === 'directory' && up.statusCode === 200) {
            const dirJson = JSON.parse(text.toString('utf8')) as Record<string, unknown>;
            if (renewalInfo) dirJson.renewalInfo = `${origin}${RENEWAL_INFO_PATH}`;
            if (profiles) dirJson.meta = { ...((dirJson.meta as Record<string, unknown> | undefined) ?? {}), profiles };
            text = Buffer.from(JSON.stringify(dirJson, null, 2));
          }
          if (kind === 'certificate' && up.statusCode === 200) {
            const certId = ariCertId(text.toString('utf8'));
            if (certId) servedCertIds.add(certId);
          }
          recordOrder(up.statusCode, false);
          const out: Record<string, string | string[]> = {};
          for (const [k, v] of Object.entries(up.headers)) if (v !== undefined && !HOP_BY_HOP.has(k)) out[k] = v;
          send(up.statusCode, out, text, false, caMs);
        } catch (err) {
          send(502, { 'content-type': 'text/plain' }, `acme proxy: ${(err as Error).message}\n`, false);
        }
      })();
    });
  });
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, resolve));
  const { port } = server.address() as AddressInfo;
  origin = `https://127.0.0.1:${port}`;

  return {
    directoryUrl: `${origin}${target.pathname}`,
    origin,
    listenerCaPath: pebble.listenerCaPath,
    setProfiles(p) {
      profiles = p;
    },
    setRenewalInfo(source) {
      renewalInfo = source;
    },
    failNext(kind, count, fault, when) {
      oneShot.push({ kind, left: count, fault, ...(when ? { when } : {}) });
    },
    failAlways(kind, fault) {
      if (fault) always.set(kind, fault);
      else always.delete(kind);
    },
    delayAlways(kind, ms) {
      if (ms !== undefined) delays.set(kind, ms);
      else delays.delete(kind);
    },
    rejectForeignReplaces(on) {
      refuseForeignReplaces = on;
    },
    servedCertIds: () => [...servedCertIds],
    newOrders: () => [...orders],
    ordersPlaced: () => orders.filter((o) => !o.injected && o.status === 201).length,
    renewalInfoRequests: () => [...renewalInfoAsked],
    exchanges: () => exchanges,
    reset() {
      orders = [];
      renewalInfoAsked = [];
      exchanges.length = 0;
    },
    close: async () => {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await pool.close();
    },
  };
}
