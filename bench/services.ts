// Helpers every section shares: the `ask` endpoint both gateways consult, the trivial upstream
// (a separate process), and the throwaway CA files used for seeded certificates.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { log } from './util.ts';

export const NODE = process.execPath;
export const PROJECT_ROOT = fileURLToPath(new URL('../', import.meta.url));

export interface AskServer {
  url: string;
  /** Requests answered so far, by decision. */
  readonly allowed: number;
  readonly denied: number;
  close(): Promise<void>;
}

/** Caddy-compatible `ask` endpoint: 200 for names under bench.test (and localhost), 403 otherwise. */
export async function startAskServer(): Promise<AskServer> {
  let allowed = 0;
  let denied = 0;
  const server: Server = createServer((req, res) => {
    const domain = new URL(req.url ?? '/', 'http://x').searchParams.get('domain') ?? '';
    const ok = domain.endsWith('.bench.test');
    if (ok) allowed++;
    else denied++;
    res.writeHead(ok ? 200 : 403, { 'content-type': 'text/plain', 'content-length': ok ? 3 : 4 });
    res.end(ok ? 'ok\n' : 'no!\n');
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/ask`,
    get allowed() {
      return allowed;
    },
    get denied() {
      return denied;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

export interface Upstream {
  port: number;
  pid: number;
  close(): Promise<void>;
}

export async function startUpstreamProcess(): Promise<Upstream> {
  const script = fileURLToPath(new URL('./upstream-server.ts', import.meta.url));
  const { child, port } = await spawnAnnouncingPort(script, [], 'upstream', 10_000);
  log(`upstream listening on 127.0.0.1:${port} (pid ${child.pid})`);
  return {
    port,
    pid: child.pid!,
    close: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
        setTimeout(() => child.kill('SIGKILL'), 3000).unref();
      }),
  };
}

/**
 * Starts `script` under tsx as a child process (cwd the project root, stderr inherited) and
 * waits until it prints `{"port":N}` on stdout; rejects when it exits first or after `timeoutMs`
 * (`what` names it in the error).
 */
export async function spawnAnnouncingPort(script: string, args: string[], what: string, timeoutMs: number): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(NODE, ['--import', 'tsx', script, ...args], { cwd: PROJECT_ROOT, stdio: ['pipe', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${what} did not start within ${timeoutMs / 1000} s`)), timeoutMs);
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString('utf8');
      const m = /\{"port":(\d+)\}/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited with ${code}`));
    });
  });
  return { child, port };
}
