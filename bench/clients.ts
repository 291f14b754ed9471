// The HTTPS client used for first requests and bursts: one fresh connection per request (no
// agent, no session reuse), TLS 1.3, certificate not verified but checked to name the host.
import { request } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { now } from './util.ts';

export interface RequestResult {
  name: string;
  ok: boolean;
  /** Spawn of the request → last byte of the response body, ms. */
  ms: number;
  /** TCP connect → TLS handshake done, ms (the part an on-demand issuance happens in). */
  handshakeMs: number;
  status: number;
  /** The served certificate names `name` (false: the fallback or another certificate). */
  rightCertificate: boolean;
  error?: string;
}

export function httpsGet(port: number, name: string, timeoutMs: number): Promise<RequestResult> {
  return new Promise((resolve) => {
    const t0 = now();
    let tConnect = t0;
    let tSecure = t0;
    let rightCertificate = false;
    let settled = false;
    const finish = (r: Omit<RequestResult, 'name' | 'ms' | 'handshakeMs' | 'rightCertificate'>): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ name, ms: now() - t0, handshakeMs: tSecure - tConnect, rightCertificate, ...r });
    };
    const req = request({
      host: '127.0.0.1',
      port,
      servername: name,
      path: '/',
      method: 'GET',
      headers: { host: name, connection: 'close' },
      agent: false,
      rejectUnauthorized: false,
      minVersion: 'TLSv1.3',
    });
    const timer = setTimeout(() => {
      req.destroy(new Error(`no response within ${timeoutMs} ms`));
    }, timeoutMs);
    req.once('socket', (socket) => {
      socket.once('connect', () => (tConnect = now()));
      socket.once('secureConnect', () => {
        tSecure = now();
        const san = (socket as TLSSocket).getPeerX509Certificate()?.subjectAltName ?? '';
        rightCertificate = san.split(', ').includes(`DNS:${name}`);
      });
    });
    req.once('response', (res) => {
      res.resume();
      res.once('end', () => finish({ ok: res.statusCode === 200 && rightCertificate, status: res.statusCode ?? 0 }));
      res.once('error', (err) => finish({ ok: false, status: res.statusCode ?? 0, error: err.message }));
    });
    req.once('error', (err) => finish({ ok: false, status: 0, error: err.message }));
    req.end();
  });
}
