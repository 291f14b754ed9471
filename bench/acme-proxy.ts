// An HTTPS logging proxy in front of Pebble: the gateways use it as their ACME directory, so every
// ACME request is timed at the wire. Pebble 2.4 logs with one-second resolution, too coarse for a
// ~0.5 s issuance, hence this proxy. Pebble builds its URLs from the Host header, which the proxy
// passes through, so every URL in the directory, orders and authorizations points back here.
//
// Per domain it reports
//   windowMs  newOrder request received → certificate download answered (what the CA side of one
//             issuance spans, including the time Pebble waits for the client's next poll and
//             for its own validation of the gateway's challenge answer)
//   busyMs    sum over that domain's requests of Pebble's own answer time (CA work proper)
// The proxy itself costs each request a loopback hop (well under a millisecond on this machine);
// both gateways pay it equally.
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { Pool } from 'undici';

export interface AcmeExchange {
  t0: number;
  t1: number;
  pebbleMs: number;
  method: string;
  path: string;
  status: number;
  domain?: string;
}

export interface DomainTiming {
  domain: string;
  windowMs: number;
  busyMs: number;
  requests: number;
  /** The order's requests: kind (order, authz, chall, finalize, order-poll, cert), start ms after newOrder, Pebble ms. */
  timeline: [string, number, number][];
}

function kindOf(path: string): string {
  const m = /^\/([a-zA-Z-]+)/.exec(path);
  const seg = m?.[1] ?? path;
  return { 'order-plz': 'new-order', authZ: 'authz', chalZ: 'challenge', 'finalize-order': 'finalize', 'my-order': 'order', certZ: 'cert' }[seg] ?? seg;
}

export interface AcmeProxy {
  directoryUrl: string;
  exchanges: AcmeExchange[];
  /** Orders seen (newOrder requests answered 201). */
  orders(): number;
  timings(): Map<string, DomainTiming>;
  reset(): void;
  close(): Promise<void>;
}

function b64json(s: unknown): unknown {
  if (typeof s !== 'string' || s === '') return undefined;
  try {
    return JSON.parse(Buffer.from(s, 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
}

/** Every string in a JSON value that is a URL on `origin`, as a path. */
function collectPaths(value: unknown, origin: string, out: string[]): void {
  if (typeof value === 'string') {
    if (value.startsWith(origin)) out.push(value.slice(origin.length));
  } else if (Array.isArray(value)) {
    for (const v of value) collectPaths(v, origin, out);
  } else if (value && typeof value === 'object') {
    for (const v of Object.values(value)) collectPaths(v, origin, out);
  }
}

/**
 * Starts the proxy on a free loopback port. `listenerCaPath` is the file from startPebble; its
 * directory also holds the listener certificate and key Pebble serves, which the proxy reuses
 * (they are for 127.0.0.1, so the gateways' trust in that CA covers the proxy too).
 */
export async function startAcmeProxy(pebbleDirectoryUrl: string, listenerCaPath: string): Promise<AcmeProxy> {
  const dir = dirname(listenerCaPath);
  const [ca, cert, key] = await Promise.all([
    readFile(listenerCaPath, 'utf8'),
    readFile(join(dir, 'listener-cert.pem'), 'utf8'),
    readFile(join(dir, 'listener-key.pem'), 'utf8'),
  ]);
  const target = new URL(pebbleDirectoryUrl);
  const pool = new Pool(target.origin, { connect: { ca }, connections: 64, pipelining: 1 });
  const exchanges: AcmeExchange[] = [];
  const owner = new Map<string, string>(); // path → domain
  let origin = '';

  const server: Server = createServer({ cert, key, keepAliveTimeout: 30_000 }, (req, res) => {
    const t0 = performance.now();
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const path = req.url ?? '/';
      let domain = owner.get(path.split('?')[0]!);
      if (!domain && req.method === 'POST' && body.length > 0) {
        try {
          const jws = JSON.parse(body.toString('utf8')) as { payload?: string };
          const payload = b64json(jws.payload) as { identifiers?: { value?: string }[] } | undefined;
          domain = payload?.identifiers?.[0]?.value;
        } catch {
          // not a JWS
        }
      }
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers[k] = v;
      const f0 = performance.now();
      pool
        .request({ method: (req.method ?? 'GET') as 'GET', path, headers, body: body.length > 0 ? body : null })
        .then(async (up) => {
          const text = Buffer.from(await up.body.arrayBuffer());
          const pebbleMs = performance.now() - f0;
          if (domain) {
            const loc = up.headers.location;
            const found: string[] = [];
            if (typeof loc === 'string') collectPaths(loc, origin, found);
            if ((up.headers['content-type'] ?? '').toString().includes('json')) {
              try {
                collectPaths(JSON.parse(text.toString('utf8')), origin, found);
              } catch {
                // not JSON after all
              }
            }
            // The directory and nonce URLs are shared by every order: never attribute them.
            for (const p of found) if (!/\/(dir|nonce-plz|order-plz|sign-me-up|rollover-account-key|revoke-cert)$/.test(p)) owner.set(p, domain);
          }
          const out: Record<string, string | string[]> = {};
          for (const [k, v] of Object.entries(up.headers)) if (v !== undefined && k !== 'transfer-encoding' && k !== 'connection' && k !== 'keep-alive') out[k] = v;
          out['content-length'] = String(text.length);
          res.writeHead(up.statusCode, out);
          res.end(text, () => {
            exchanges.push({ t0, t1: performance.now(), pebbleMs, method: req.method ?? 'GET', path, status: up.statusCode, ...(domain ? { domain } : {}) });
          });
        })
        .catch((err: Error) => {
          res.writeHead(502, { 'content-type': 'text/plain' });
          res.end(`acme proxy: ${err.message}\n`);
        });
    });
  });
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, resolve));
  const { port } = server.address() as AddressInfo;
  origin = `https://127.0.0.1:${port}`;

  return {
    directoryUrl: `${origin}${target.pathname}`,
    exchanges,
    orders: () => exchanges.filter((e) => e.method === 'POST' && /\/order-plz$/.test(e.path) && e.status === 201).length,
    timings() {
      const byDomain = new Map<string, AcmeExchange[]>();
      for (const e of exchanges) {
        if (!e.domain) continue;
        const list = byDomain.get(e.domain) ?? [];
        list.push(e);
        byDomain.set(e.domain, list);
      }
      const out = new Map<string, DomainTiming>();
      for (const [domain, list] of byDomain) {
        const order = list.find((e) => /\/order-plz$/.test(e.path));
        const certs = list.filter((e) => /\/certZ\//.test(e.path) && e.status === 200);
        if (!order || certs.length === 0) continue;
        const end = Math.max(...certs.map((e) => e.t1));
        const inWindow = list.filter((e) => e.t0 >= order.t0 && e.t1 <= end);
        out.set(domain, {
          domain,
          windowMs: end - order.t0,
          busyMs: inWindow.reduce((s, e) => s + e.pebbleMs, 0),
          requests: inWindow.length,
          timeline: inWindow.map((e) => [kindOf(e.path), Math.round(e.t0 - order.t0), Math.round(e.pebbleMs * 10) / 10]),
        });
      }
      return out;
    },
    reset() {
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
