// Starts certgate and Caddy as processes, the way an operator runs them, from configs written
// here. Both get the same inputs: listen ports (the ones their Pebble validates against), a
// file-storage directory, an ACME directory + the root that signed its TLS certificate, an
// on-demand policy, and one upstream.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { connect as tlsConnect } from 'node:tls';
import { join } from 'node:path';
import { NODE, PROJECT_ROOT } from './services.ts';
import { cpuMsOf, cpuPreciseMsOf, memoryOf, now, sleep, type MemoryReading } from './util.ts';

export type GatewayKind = 'certgate' | 'caddy';

export interface GatewaySpec {
  kind: GatewayKind;
  httpsPort: number;
  httpPort: number;
  storageDir: string;
  /** Directory for the config file (and Caddy's XDG dirs). */
  workDir: string;
  acmeDirectory: string;
  acmeRootPath: string;
  /** certgate: `onDemand.allow` patterns; Caddy has no equivalent and always uses `ask`. */
  allow?: string[];
  ask: string;
  /** certgate only: use `ask` alone (no allow list), so both gateways make the same policy call. */
  askOnly?: boolean;
  upstreamPort: number;
  /** certgate: tls.fallback (served for SNI it will not issue for, e.g. `localhost`). */
  fallback?: { cert: string; key: string };
  accessLog?: boolean;
  /** certgate: run with --cpu-prof, profiles written here. */
  cpuProfDir?: string;
  /** certgate entry point: compiled build or bin/certgate.js (tsx). */
  certgateEntry: string;
  /** Extra certgate config keys (merged at top level). */
  certgateExtra?: Record<string, unknown>;
  logLevel?: string;
  /**
   * certgate: keep the default `onDemand.limits` (the flood section: the issue measures with the
   * default config) instead of the burst section's raised per-client bucket.
   */
  defaultLimits?: boolean;
}

export interface RunningGateway {
  kind: GatewayKind;
  spec: GatewaySpec;
  pid: number;
  /** performance.now() just before spawn. */
  spawnedAt: number;
  output(): string;
  memory(): MemoryReading;
  cpuMs(): number;
  /** The same to the nanosecond, live threads only (cpuPreciseMsOf). */
  cpuPreciseMs(): number;
  alive(): boolean;
  stop(): Promise<void>;
}

const SETPRIV = '/usr/bin/setpriv';
const CADDY = '/usr/bin/caddy';

export function caddyAvailable(): boolean {
  return existsSync(CADDY);
}

async function writeCertgateConfig(spec: GatewaySpec): Promise<string> {
  const onDemand: Record<string, unknown> = { ask: spec.ask };
  if (!spec.askOnly && spec.allow) onDemand.allow = spec.allow;
  // The burst section stands for many customers' first visits at once, yet all come from the
  // one loopback client: give it the pre-issue-13 per-client bucket, not the stricter default,
  // and room for all 300 in the issuance queue (Caddy has no such bound).
  if (!spec.defaultLimits) onDemand.limits = { perClient: { rate: 20, burst: 500 }, maxQueuedIssuances: 1000 };
  const config: Record<string, unknown> = {
    listen: { https: `127.0.0.1:${spec.httpsPort}`, http: `127.0.0.1:${spec.httpPort}` },
    storage: { file: { path: spec.storageDir } },
    acme: { directory: spec.acmeDirectory, trustedRoots: [spec.acmeRootPath], challenges: ['http-01'], keyType: 'ecdsa-p256' },
    onDemand,
    ...(spec.fallback ? { tls: { fallback: spec.fallback } } : {}),
    proxy: { upstream: `http://127.0.0.1:${spec.upstreamPort}`, accessLog: spec.accessLog ?? false },
    log: { level: spec.logLevel ?? 'info' },
    ...spec.certgateExtra,
  };
  const file = join(spec.workDir, 'certgate.json');
  await writeFile(file, JSON.stringify(config, null, 2));
  return file;
}

/**
 * Caddy 2.6 JSON config equivalent to the certgate one: on-demand TLS for every name (catch-all
 * server), approval by the same `ask` URL, the ACME issuer pinned to our Pebble (no ZeroSSL or
 * Let's Encrypt fallback), its TLS root trusted, http-01 only (tls-alpn-01 disabled, as certgate
 * is configured with http-01 only), ECDSA P-256 keys, OCSP stapling off, admin API off, config
 * autosave off, file storage in a temp dir, reverse_proxy to the upstream. No access log (Caddy's
 * default; certgate's access log is switched off to match unless a section says otherwise).
 */
async function writeCaddyConfig(spec: GatewaySpec): Promise<string> {
  const config = {
    admin: { disabled: true, config: { persist: false } },
    storage: { module: 'file_system', root: spec.storageDir },
    logging: { logs: { default: { level: (spec.logLevel ?? 'info').toUpperCase(), writer: { output: 'stderr' } } } },
    apps: {
      http: {
        http_port: spec.httpPort,
        https_port: spec.httpsPort,
        servers: {
          bench: {
            listen: [`127.0.0.1:${spec.httpsPort}`],
            // HTTP/1.1 and HTTP/2 over TCP as certgate; no HTTP/3 (UDP) listener.
            protocols: ['h1', 'h2'],
            routes: [{ handle: [{ handler: 'reverse_proxy', upstreams: [{ dial: `127.0.0.1:${spec.upstreamPort}` }] }] }],
            tls_connection_policies: [{}],
            ...(spec.accessLog ? { logs: {} } : {}),
          },
          challenges: {
            // Answers http-01 (Caddy serves ACME challenges before any route) and redirects the rest.
            listen: [`127.0.0.1:${spec.httpPort}`],
            protocols: ['h1'],
            routes: [],
          },
        },
      },
      tls: {
        automation: {
          policies: [
            {
              issuers: [
                {
                  module: 'acme',
                  ca: spec.acmeDirectory,
                  trusted_roots_pem_files: [spec.acmeRootPath],
                  challenges: { 'tls-alpn': { disabled: true }, http: { alternate_port: spec.httpPort } },
                },
              ],
              on_demand: true,
              key_type: 'p256',
              disable_ocsp_stapling: true,
            },
          ],
          on_demand: { ask: spec.ask },
        },
        disable_ocsp_stapling: true,
      },
    },
  };
  const file = join(spec.workDir, 'caddy.json');
  await writeFile(file, JSON.stringify(config, null, 2));
  return file;
}

export async function startGateway(spec: GatewaySpec): Promise<RunningGateway> {
  let cmd: string;
  let args: string[];
  let env: NodeJS.ProcessEnv;
  if (spec.kind === 'certgate') {
    const file = await writeCertgateConfig(spec);
    cmd = NODE;
    args = [...(spec.cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${spec.cpuProfDir}`] : []), spec.certgateEntry, 'run', '--config', file];
    env = { ...process.env };
    delete env.CERTGATE_LOG_LEVEL;
    delete env.CERTGATE_CONFIG;
  } else {
    const file = await writeCaddyConfig(spec);
    cmd = CADDY;
    args = ['run', '--config', file];
    env = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: spec.workDir,
      XDG_CONFIG_HOME: join(spec.workDir, 'xdg-config'),
      XDG_DATA_HOME: join(spec.workDir, 'xdg-data'),
    };
  }
  // setpriv execs the program with PR_SET_PDEATHSIG (same PID): it dies with the bench, even on SIGKILL.
  const useSetpriv = existsSync(SETPRIV);
  const spawnedAt = now();
  // Output straight into the log file, as a service manager would take it: read through a pipe,
  // the bench's own process (busy, with a large heap, in the full run) fell behind an access
  // log's ~1.5 MB/s, and the gateway then paid for a full pipe.
  const logFile = join(spec.workDir, `${spec.kind}.log`);
  const logFd = openSync(logFile, 'a');
  const stdio: ['ignore', number, number] = ['ignore', logFd, logFd];
  const child: ChildProcess = useSetpriv
    ? spawn(SETPRIV, ['--pdeathsig', 'KILL', '--', cmd, ...args], { cwd: PROJECT_ROOT, env, stdio })
    : spawn(cmd, args, { cwd: PROJECT_ROOT, env, stdio });
  closeSync(logFd);
  // The head (start-up) and a recent tail, for error messages and Caddy's storage-clean line.
  const out = (): string => {
    const text = readFileSync(logFile, 'utf8');
    return text.length > 4_000_000 ? text.slice(0, 1_000_000) + '\n[...]\n' + text.slice(-2_000_000) : text;
  };
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const pid = child.pid!;
  const alive = (): boolean => child.exitCode === null && child.signalCode === null;
  return {
    kind: spec.kind,
    spec,
    pid,
    spawnedAt,
    output: out,
    memory: () => memoryOf(pid),
    cpuMs: () => cpuMsOf(pid),
    cpuPreciseMs: () => cpuPreciseMsOf(pid),
    alive,
    async stop() {
      if (!alive()) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => {
        if (alive()) child.kill('SIGKILL');
      }, 8000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** One TLS 1.3 handshake; resolves with the served leaf's subjectAltName or rejects. */
export function handshakeOnce(port: number, servername: string, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({
      host: '127.0.0.1',
      port,
      servername,
      rejectUnauthorized: false,
      minVersion: 'TLSv1.3',
      ALPNProtocols: ['http/1.1'],
    });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`handshake with ${servername} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      const san = socket.getPeerX509Certificate()?.subjectAltName ?? '';
      socket.destroy();
      resolve(san);
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    });
  });
}

/** What waitUntilServing reads of a gateway (any server process with an HTTPS port will do). */
export type ServingTarget = Pick<RunningGateway, 'kind' | 'spawnedAt' | 'output' | 'alive'> & { spec: Pick<GatewaySpec, 'httpsPort'> };

/**
 * Polls handshakes for `servername` until one serves a certificate naming it (or any
 * certificate when `anyCertificate`); resolves with the time since spawn in ms.
 */
export async function waitUntilServing(gw: ServingTarget, servername: string, opts: { timeoutMs: number; anyCertificate?: boolean; intervalMs?: number }): Promise<number> {
  const deadline = now() + opts.timeoutMs;
  let lastErr = '';
  while (now() < deadline) {
    if (!gw.alive()) throw new Error(`${gw.kind} exited during start-up:\n${gw.output().slice(-4000)}`);
    try {
      const san = await handshakeOnce(gw.spec.httpsPort, servername, Math.max(100, deadline - now()));
      if (opts.anyCertificate || san.split(', ').includes(`DNS:${servername}`)) return now() - gw.spawnedAt;
      lastErr = `served ${san || 'a certificate without SAN'}`;
    } catch (err) {
      lastErr = (err as Error).message;
      // A TLS alert is an answer too: the listener is up and speaking TLS.
      if (opts.anyCertificate && /alert/i.test(lastErr)) return now() - gw.spawnedAt;
    }
    await sleep(opts.intervalMs ?? 10);
  }
  throw new Error(`${gw.kind} did not serve ${servername} within ${opts.timeoutMs} ms (${lastErr}):\n${gw.output().slice(-4000)}`);
}
