// Reference TLS servers for the handshake CPU rows: what a TLS handshake costs without a gateway.
//   openssl  `openssl s_server -www` with seeded certificate 0: OpenSSL alone, one process, no
//            SNI callback (it serves its one certificate whatever the client names)
//   node     a bare node:https server (this file run as a script): one SecureContext per seeded
//            name built at start, an SNICallback that is a Map lookup, 200 "ok" to any request.
//            The same Node TLS + HTTP server layers certgate has, without certgate's code: the
//            difference to certgate is ours, the difference to openssl is Node's.
// Both read the seeded certificates from the bench's cache (seed.ts), so they serve the same
// leaf (ECDSA P-256) and chain as the gateways. tls-layers.ts starts the same servers with other
// certificates, and the Node one on other layers (node:tls alone, node:http2).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createSecureServer } from 'node:http2';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSecureContext, createServer as createTlsServer, type SecureContext } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { freePort } from '../test/support/ports.ts';
import { spawnAnnouncingPort } from './services.ts';
import { cpuMsOf, log, seededName, sleep } from './util.ts';

/** A running reference server. */
export interface TlsReference {
  key: 'openssl' | 'node';
  port: number;
  pid: number;
  cpuMs(): number;
  stop(): Promise<void>;
}

/** The seeded-certificate cache (seed.ts), loaded only by the bench: the script stays small. */
async function cacheRoot(): Promise<string> {
  return (await import('./seed.ts')).CACHE_ROOT;
}

/** A certificate a reference server serves for `name`: its PEM files. */
export interface CertFiles {
  name: string;
  cert: string;
  key: string;
}

/** certgate-layout files of seeded names 0..count-1 in the cache (chunk 0 holds the first 10,000). */
export async function seededCertificateFiles(count: number): Promise<CertFiles[]> {
  const root = await cacheRoot();
  return Array.from({ length: count }, (_, i) => {
    const dir = join(root, 'chunks', '0', 'certgate', seededName(i));
    return { name: seededName(i), cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem') };
  });
}

function stopper(child: ChildProcess): () => Promise<void> {
  return () =>
    new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
      setTimeout(() => child.kill('SIGKILL'), 3000).unref();
    });
}

/** `openssl s_server` serving `file` (default: seeded certificate 0) on a free loopback port. */
export async function startOpensslReference(file?: CertFiles): Promise<TlsReference> {
  const port = await freePort();
  const { cert, key } = file ?? (await seededCertificateFiles(1))[0]!;
  const child = spawn('openssl', ['s_server', '-accept', `127.0.0.1:${port}`, '-cert', cert, '-key', key, '-www', '-quiet', '-tls1_3'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (c: Buffer) => (err += c.toString('utf8')));
  // s_server prints nothing with -quiet: wait until the port accepts.
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null) throw new Error(`openssl s_server exited: ${err.slice(0, 300)}`);
    if (await accepts(port)) break;
    await sleep(50);
  }
  log(`reference: openssl s_server on 127.0.0.1:${port} (pid ${child.pid})`);
  return { key: 'openssl', port, pid: child.pid!, cpuMs: () => cpuMsOf(child.pid!), stop: stopper(child) };
}

/** A bare node:https server with SecureContexts for seeded names 0..names-1 (see the header). */
export async function startNodeReference(names: number): Promise<TlsReference> {
  const ref = await startNodeServer(await seededCertificateFiles(names));
  log(`reference: bare node:https server, ${names} contexts, on 127.0.0.1:${ref.port} (pid ${ref.pid})`);
  return ref;
}

/** The Node server layer a reference runs on: node:tls alone, node:https, or node:http2 with allowHTTP1 and an ALPNCallback (certgate's server). */
export type NodeLayer = 'tls' | 'https' | 'http2';

/**
 * The bare Node server of the header (this file as a script) with a SecureContext for each of
 * `files`, on `layer` (default https); `nodeFlags` go to its Node through NODE_OPTIONS.
 */
export async function startNodeServer(files: CertFiles[], opts: { layer?: NodeLayer; nodeFlags?: string[] } = {}): Promise<TlsReference> {
  const dir = mkdtempSync(join(tmpdir(), 'certgate-node-reference-'));
  const listFile = join(dir, 'certificates.json');
  writeFileSync(listFile, JSON.stringify(files));
  const env = process.env.NODE_OPTIONS;
  // spawnAnnouncingPort runs `node --import tsx script` with this process's environment.
  if (opts.nodeFlags?.length) process.env.NODE_OPTIONS = opts.nodeFlags.join(' ');
  try {
    const { child, port } = await spawnAnnouncingPort(fileURLToPath(import.meta.url), [opts.layer ?? 'https', listFile], 'node reference', 60_000);
    const stop = stopper(child);
    return { key: 'node', port, pid: child.pid!, cpuMs: () => cpuMsOf(child.pid!), stop: () => stop().finally(() => rmSync(dir, { recursive: true, force: true })) };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  } finally {
    if (env === undefined) delete process.env.NODE_OPTIONS;
    else process.env.NODE_OPTIONS = env;
  }
}

async function accepts(port: number): Promise<boolean> {
  const { connect } = await import('node:net');
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port }, () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

/** Server side: `<layer> <JSON file of CertFiles[]>` (startNodeServer). */
function serve(layer: NodeLayer, listFile: string): void {
  const files = JSON.parse(readFileSync(listFile, 'utf8')) as CertFiles[];
  const contexts = new Map<string, SecureContext>(files.map((f) => [f.name, createSecureContext({ cert: readFileSync(f.cert), key: readFileSync(f.key) })]));
  const [cert, key] = [readFileSync(files[0]!.cert), readFileSync(files[0]!.key)];
  const SNICallback = (name: string, cb: (err: Error | null, ctx?: SecureContext) => void): void => cb(null, contexts.get(name));
  const body = Buffer.from('ok\n');
  const answer = (req: { resume(): void }, res: { writeHead(status: number, headers: Record<string, string | number>): { end(body: Buffer): void } }): void => {
    req.resume();
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length }).end(body);
  };
  let server: Server;
  if (layer === 'tls') server = createTlsServer({ cert, key, SNICallback }, (socket) => socket.resume());
  else if (layer === 'https') server = createHttpsServer({ cert, key, SNICallback }, answer);
  else server = createSecureServer({ cert, key, SNICallback, allowHTTP1: true, ALPNCallback: ({ protocols }) => ['h2', 'http/1.1'].find((p) => protocols.includes(p)) }, answer as never);
  server.listen({ host: '127.0.0.1', port: 0 }, () => {
    process.stdout.write(JSON.stringify({ port: (server.address() as AddressInfo).port }) + '\n');
  });
  process.stdin.resume();
  process.stdin.on('end', () => process.exit(0));
  process.on('SIGTERM', () => process.exit(0));
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) serve(process.argv[2] as NodeLayer, process.argv[3]!);
