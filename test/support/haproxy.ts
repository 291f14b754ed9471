// Debian's haproxy in TCP mode in front of a gateway, for the PROXY protocol tests: one frontend
// per entry, each forwarding to its backend port with `send-proxy` (v1) or `send-proxy-v2`.
// Run in the foreground (-db) from a config in a temp dir; stop() kills it by PID.
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { trackChild, trackDir, untrackDir } from './cleanup.ts';

const HAPROXY_BIN = '/usr/sbin/haproxy';

/** One frontend on 127.0.0.1:`listen` forwarding to 127.0.0.1:`backend`. */
export interface HaproxyRoute {
  listen: number;
  backend: number;
  proxyProtocol: 'v1' | 'v2';
  /** Health-check the backend every second (with v2 these send a LOCAL header). */
  check?: boolean;
}

export interface HaproxyHandle {
  output(): string;
  stop(): Promise<void>;
}

/** Starts haproxy for `routes` and waits until every frontend accepts connections. */
export async function startHaproxy(routes: HaproxyRoute[]): Promise<HaproxyHandle> {
  const dir = await mkdtemp(join(tmpdir(), 'certgate-haproxy-'));
  trackDir(dir);
  const config = [
    'global',
    '  maxconn 1024',
    'defaults',
    '  mode tcp',
    '  timeout connect 5s',
    '  timeout client 120s',
    '  timeout server 120s',
    ...routes.flatMap((r, i) => [
      `frontend f${i}`,
      `  bind 127.0.0.1:${r.listen}`,
      `  default_backend b${i}`,
      `backend b${i}`,
      `  server gw 127.0.0.1:${r.backend} ${r.proxyProtocol === 'v2' ? 'send-proxy-v2' : 'send-proxy'}${r.check ? ' check check-send-proxy inter 1s' : ''}`,
    ]),
    '',
  ].join('\n');
  const path = join(dir, 'haproxy.cfg');
  await writeFile(path, config);
  const child = spawn(HAPROXY_BIN, ['-db', '-f', path], { stdio: ['ignore', 'pipe', 'pipe'] });
  trackChild(child);
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString('utf8')));
  child.stderr!.on('data', (c: Buffer) => (out += c.toString('utf8')));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      process.kill(child.pid, 'SIGTERM');
      await exited;
    }
    untrackDir(dir);
    await rm(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 15_000;
  for (const r of routes) {
    while (!(await accepts(r.listen))) {
      if (child.exitCode !== null || Date.now() > deadline) {
        await stop();
        throw new Error(`haproxy did not start listening on 127.0.0.1:${r.listen}:\n${out}\nconfig:\n${config}`);
      }
      await sleep(50);
    }
  }
  return { output: () => out, stop };
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port }, () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}
