// Admin API clients for tests: JSON calls, an insecure HTTPS GET (to see the upstream a host is
// routed to even when the fallback certificate is served), and a Server-Sent Events reader.
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';

export interface AdminResult {
  status: number;
  body: string;
  json: unknown;
  headers: Record<string, string | string[] | undefined>;
}

export function adminCall(
  port: number,
  method: string,
  path: string,
  opts: { token?: string; body?: unknown; rawBody?: string; contentType?: string } = {},
): Promise<AdminResult> {
  return new Promise((resolve, reject) => {
    const payload = opts.rawBody ?? (opts.body === undefined ? undefined : JSON.stringify(opts.body));
    const headers: Record<string, string> = {};
    if (opts.token) headers.authorization = `Bearer ${opts.token}`;
    if (payload !== undefined) {
      headers['content-type'] = opts.contentType ?? 'application/json';
      // Framed explicitly: Node sends a GET/DELETE body without Content-Length or chunking otherwise.
      headers['content-length'] = String(Buffer.byteLength(payload));
    }
    const req = httpRequest({ host: '127.0.0.1', port, method, path, headers, agent: false, timeout: 120_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        let json: unknown;
        try {
          json = body ? JSON.parse(body) : undefined;
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, body, json, headers: res.headers });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`admin call ${method} ${path} timed out`)));
    req.on('error', reject);
    req.end(payload);
  });
}

/** GET https://<name><path> through 127.0.0.1:<port> without verifying the certificate. */
export function insecureGet(name: string, port: number, path = '/'): Promise<{ status: number; body: string; fingerprint256: string; headers: IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      { host: '127.0.0.1', port, path, servername: name, headers: { host: name }, rejectUnauthorized: false, agent: false, timeout: 30_000 },
      (res) => {
        const cert = (res.socket as import('node:tls').TLSSocket).getPeerCertificate();
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), fingerprint256: cert.fingerprint256, headers: res.headers }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`timeout requesting https://${name}:${port}${path}`)));
    req.on('error', reject);
    req.end();
  });
}

export interface SseEvent {
  event: string;
  data: Record<string, unknown>;
}

export interface SseClient {
  readonly events: SseEvent[];
  /** Comment lines seen (keep-alives). */
  readonly comments: number;
  status: number;
  /** Resolves with the first event (seen so far or later) matching `pred`. */
  waitFor(pred: (e: SseEvent) => boolean, timeoutMs?: number): Promise<SseEvent>;
  close(): void;
}

export function openEvents(port: number, token?: string): Promise<SseClient> {
  return new Promise((resolve, reject) => {
    const events: SseEvent[] = [];
    const waiters = new Set<() => void>();
    let comments = 0;
    const req = httpRequest(
      { host: '127.0.0.1', port, path: '/v1/events', headers: token ? { authorization: `Bearer ${token}` } : {}, agent: false },
      (res) => {
        let buffer = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          buffer += chunk;
          let end: number;
          while ((end = buffer.indexOf('\n\n')) !== -1) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            let event = 'message';
            let data = '';
            for (const line of block.split('\n')) {
              if (line.startsWith(':')) comments++;
              else if (line.startsWith('event: ')) event = line.slice(7);
              else if (line.startsWith('data: ')) data += line.slice(6);
            }
            if (data) events.push({ event, data: JSON.parse(data) as Record<string, unknown> });
            for (const wake of [...waiters]) wake();
          }
        });
        res.on('error', () => {});
        const client: SseClient = {
          events,
          get comments() {
            return comments;
          },
          status: res.statusCode ?? 0,
          waitFor(pred, timeoutMs = 60_000) {
            return new Promise((done, fail) => {
              const check = () => {
                const found = events.find(pred);
                if (!found) return;
                clearTimeout(timer);
                waiters.delete(check);
                done(found);
              };
              const timer = setTimeout(() => {
                waiters.delete(check);
                fail(new Error(`no matching event within ${timeoutMs} ms; saw: ${events.map((e) => `${e.event}(${String(e.data.domain ?? e.data.name)})`).join(', ')}`));
              }, timeoutMs);
              waiters.add(check);
              check();
            });
          },
          close() {
            req.destroy();
          },
        };
        resolve(client);
      },
    );
    req.on('error', reject);
    req.end();
  });
}
