// Runs the bench's load generators as child processes with hard time limits: the handshake
// client (hs-client.ts) and wrk.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { NODE, PROJECT_ROOT } from './services.ts';
import { run } from './util.ts';

export interface HandshakeRun {
  handshakes: number;
  errors: number;
  /** Handshakes refused with a TLS alert (only counted for `random` names). */
  alerts: number;
  /** (handshakes + alerts) per second. */
  answeredPerSecond: number;
  wrongCertificate: number;
  resumed: number;
  tls13: number;
  checked: number;
  elapsedMs: number;
  perSecond: number;
  latencyMs: { p50: number; p90: number; p99: number };
  clientCpuMs: number;
  complete: boolean;
  errorSamples: string[];
  /** Handshakes per negotiated key-exchange group. */
  groups: Record<string, number>;
}

export interface HandshakeLoad {
  port: number;
  from?: number;
  count?: number;
  names?: string[];
  /** Random names below `suffix` (the flood), see hs-client.ts. */
  random?: { count: number; suffix: string };
  mode: 'once' | 'loop';
  concurrency: number;
  durationMs: number;
  checkEvery?: number;
  /** Key-exchange groups offered, see hs-client.ts (default X25519). */
  groups?: string;
}

export function handshakeLoad(load: HandshakeLoad): Promise<HandshakeRun> {
  const script = fileURLToPath(new URL('./hs-client.ts', import.meta.url));
  const opts = { from: 0, count: load.names?.length ?? load.random?.count ?? 1, ...load };
  return new Promise((resolve, reject) => {
    const child = spawn(NODE, ['--import', 'tsx', script, JSON.stringify(opts)], { cwd: PROJECT_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (err += c.toString('utf8')));
    // The client stops by itself at durationMs (plus at most one 10 s handshake timeout).
    const timer = setTimeout(() => child.kill('SIGKILL'), load.durationMs + 30_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      const line = out.trim().split('\n').pop() ?? '';
      try {
        resolve(JSON.parse(line) as HandshakeRun);
      } catch {
        reject(new Error(`handshake client failed (exit ${code}): ${err.slice(-2000)}`));
      }
    });
  });
}

export interface WrkRun {
  requestsPerSecond: number;
  requests: number;
  durationS: number;
  latencyAvgMs: number;
  errors: string;
  non2xx: number;
  raw: string;
}

function toMs(v: string, unit: string): number {
  const n = Number(v);
  return unit === 'us' ? n / 1000 : unit === 's' ? n * 1000 : unit === 'm' ? n * 60_000 : n;
}

/** wrk -t threads -c connections -d seconds; keep-alive HTTP/1.1 GETs of `url`. */
export async function wrk(url: string, opts: { threads: number; connections: number; seconds: number }): Promise<WrkRun> {
  const r = await run('wrk', ['-t', String(opts.threads), '-c', String(opts.connections), '-d', `${opts.seconds}s`, '--latency', url], { timeoutMs: (opts.seconds + 30) * 1000 });
  const raw = r.stdout + r.stderr;
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(raw);
  if (!rps) throw new Error(`wrk failed: ${raw || r.error}`);
  const total = /(\d+) requests in ([\d.]+)(\w+)/.exec(raw);
  const lat = /Latency\s+([\d.]+)(us|ms|s|m)/.exec(raw);
  const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(raw);
  const errs = /Socket errors:.*$/m.exec(raw);
  return {
    requestsPerSecond: Number(rps[1]),
    requests: total ? Number(total[1]) : 0,
    durationS: total ? toMs(total[2]!, total[3]!) / 1000 : opts.seconds,
    latencyAvgMs: lat ? toMs(lat[1]!, lat[2]!) : Number.NaN,
    errors: errs?.[0] ?? '',
    non2xx: non2xx ? Number(non2xx[1]) : 0,
    raw,
  };
}

export interface H2loadRun {
  requestsPerSecond: number;
  succeeded: number;
  /** Requests h2load counted as failed, errored or timed out. */
  failed: number;
  durationS: number;
  /** The ALPN protocol h2load negotiated ('h2' when the gateway offers it). */
  protocol: string | undefined;
  raw: string;
}

/**
 * h2load -t threads -c connections -m streams -D seconds against `url` over HTTP/2, connecting
 * to `connectTo` (host:port) so the URL's host is only the SNI and :authority.
 */
export async function h2loadRun(url: string, connectTo: string, opts: { threads: number; connections: number; streams: number; seconds: number }): Promise<H2loadRun> {
  const args = ['-t', String(opts.threads), '-c', String(opts.connections), '-m', String(opts.streams), '-D', String(opts.seconds), `--connect-to=${connectTo}`, url];
  const r = await run('h2load', args, { timeoutMs: (opts.seconds + 30) * 1000 });
  const raw = r.stdout + r.stderr;
  const fin = /finished in ([\d.]+)(ms|s), ([\d.]+) req\/s/.exec(raw);
  const req = /requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(raw);
  if (!fin || !req) throw new Error(`h2load failed: ${raw || r.error}`);
  const durationS = fin[2] === 'ms' ? Number(fin[1]) / 1000 : Number(fin[1]);
  const succeeded = Number(req[1]);
  return {
    requestsPerSecond: succeeded / durationS,
    succeeded,
    failed: Number(req[2]) + Number(req[3]) + Number(req[4]),
    durationS,
    protocol: /Application protocol: (\S+)/.exec(raw)?.[1],
    raw,
  };
}
