// Real TLS/HTTPS clients for end-to-end tests: Node's https (verifying against a given root),
// and openssl s_client for SNI values Node refuses to send (IP literals, odd characters, none).
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { request as httpRequest, type Agent } from 'node:http';
import { request } from 'node:https';
import { createServer as createTcpServer, type AddressInfo } from 'node:net';
import { connect, type PeerCertificate } from 'node:tls';

export interface HttpsResult {
  status: number;
  body: string;
  headers: Record<string, string | string[] | undefined>;
  fingerprint256: string;
}

/** GET https://<name>:<port><path> connecting to 127.0.0.1, verifying the chain against `ca`. */
export function httpsGet(name: string, port: number, ca: string, path = '/', timeoutMs = 60_000): Promise<HttpsResult> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, path, servername: name, headers: { host: name }, ca, agent: false, timeout: timeoutMs },
      (res) => {
        const cert = (res.socket as import('node:tls').TLSSocket).getPeerCertificate();
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), headers: res.headers, fingerprint256: cert.fingerprint256 }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`timeout requesting https://${name}:${port}${path}`)));
    req.on('error', reject);
    req.end();
  });
}

/** The certificate a TLS handshake with this SNI gets, without verifying it. */
export function peerCertificate(port: number, servername: string | undefined): Promise<PeerCertificate> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, ...(servername ? { servername } : {}), rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] }, () => {
      const cert = socket.getPeerCertificate();
      socket.end();
      resolve(cert);
    });
    socket.setTimeout(30_000, () => socket.destroy(new Error('handshake timeout')));
    socket.on('error', reject);
  });
}

/**
 * SHA-256 fingerprint (AA:BB:.. form, as Node prints it) of the leaf certificate that
 * `openssl s_client` receives with the given SNI (`null` sends no SNI at all).
 */
export function opensslFingerprint(port: number, servername: string | null): Promise<string> {
  const args = ['s_client', '-connect', `127.0.0.1:${port}`, ...(servername === null ? ['-noservername'] : ['-servername', servername])];
  return new Promise((resolve, reject) => {
    const child = execFile('openssl', args, { timeout: 30_000 }, (err, stdout) => {
      const m = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(stdout);
      if (!m) return reject(new Error(`openssl s_client ${args.join(' ')} printed no certificate${err ? `: ${err.message}` : ''}`));
      resolve(new X509Certificate(m[0]).fingerprint256);
    });
    child.stdin?.end();
  });
}

/** GET via curl with --resolve, verifying against a CA file: the way an operator would check. */
export function curlGet(name: string, port: number, caFile: string, path = '/'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    execFile(
      'curl',
      ['-sS', '--max-time', '60', '--resolve', `${name}:${port}:127.0.0.1`, '--cacert', caFile, '-w', '\n%{http_code}', `https://${name}:${port}${path}`],
      (err, stdout, stderr) => {
        if (err) return reject(new Error(`curl https://${name}:${port}${path} failed: ${stderr || err.message}`));
        const i = stdout.lastIndexOf('\n');
        resolve({ status: Number(stdout.slice(i + 1)), body: stdout.slice(0, i) });
      },
    );
  });
}

/** GET http://127.0.0.1:<port><path> in plain HTTP with these headers (agent: false unless given); the body as text. */
export function plainGet(port: number, path: string, opts: { headers?: Record<string, string>; agent?: Agent | false } = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, headers: opts.headers ?? {}, agent: opts.agent ?? false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/**
 * The bytes of a real ClientHello (TLS record header included) that node:tls sends for
 * `servername`, captured by a plain TCP server on 127.0.0.1: for tests that send half of one.
 */
export function clientHelloBytes(servername: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const server = createTcpServer((socket) => {
      socket.once('data', (chunk: Buffer) => {
        socket.destroy();
        server.close();
        resolve(chunk);
      });
    });
    server.listen(0, '127.0.0.1', () => {
      const client = connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, servername, ALPNProtocols: ['http/1.1'] });
      client.on('error', () => {}); // the capturing server hangs up: expected
    });
    server.on('error', reject);
  });
}
