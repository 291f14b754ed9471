// Reference TLS servers for the handshake CPU rows: what a TLS handshake costs without a gateway.
//   openssl  `openssl s_server -www` with seeded certificate 0: OpenSSL alone, one process, no
//            SNI callback (it serves its one certificate whatever the client names)
//   node     a bare node:https server (this file run as a script): one SecureContext per seeded
//            name built at start, an SNICallback that is a Map lookup, 200 "ok" to any request.
//            The same Node TLS + HTTP server layers certgate has, without certgate's code: the
//            difference to certgate is ours, the difference to openssl is Node's.
// Both read the seeded certificates from the bench's cache (seed.ts), so they serve the same
// leaf (ECDSA P-256) and chain as the gateways.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createSecureContext, type SecureContext } from 'node:tls';
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

/** certgate-layout files of seeded name `i` in the cache (chunk 0 holds the first 10,000). */
function seededFiles(root: string, i: number): { cert: string; key: string } {
  const dir = join(root, 'chunks', '0', 'certgate', seededName(i));
  return { cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem') };
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

/** `openssl s_server` serving seeded certificate 0 on a free loopback port. */
export async function startOpensslReference(): Promise<TlsReference> {
  const port = await freePort();
  const { cert, key } = seededFiles(await cacheRoot(), 0);
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
  const script = fileURLToPath(import.meta.url);
  const { child, port } = await spawnAnnouncingPort(script, [String(names), await cacheRoot()], 'node reference', 60_000);
  log(`reference: bare node:https server, ${names} contexts, on 127.0.0.1:${port} (pid ${child.pid})`);
  return { key: 'node', port, pid: child.pid!, cpuMs: () => cpuMsOf(child.pid!), stop: stopper(child) };
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

function serve(names: number, root: string): void {
  const contexts = new Map<string, SecureContext>();
  for (let i = 0; i < names; i++) {
    const f = seededFiles(root, i);
    contexts.set(seededName(i), createSecureContext({ cert: readFileSync(f.cert), key: readFileSync(f.key) }));
  }
  const first = seededFiles(root, 0);
  const body = Buffer.from('ok\n');
  const server = createServer(
    {
      cert: readFileSync(first.cert),
      key: readFileSync(first.key),
      SNICallback: (name, cb) => cb(null, contexts.get(name)),
    },
    (req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
      res.end(body);
    },
  );
  server.listen({ host: '127.0.0.1', port: 0 }, () => {
    process.stdout.write(JSON.stringify({ port: (server.address() as AddressInfo).port }) + '\n');
  });
  process.stdin.resume();
  process.stdin.on('end', () => process.exit(0));
  process.on('SIGTERM', () => process.exit(0));
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) serve(Number(process.argv[2] ?? 1), process.argv[3]!);
