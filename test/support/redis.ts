// Starts throwaway redis-server processes (Debian's /usr/bin/redis-server 7.0) on loopback for
// tests: a standalone server, a Sentinel watching one, or a small Redis Cluster.
//
// Persistence: the AOF is on with `--appendfsync no`: Redis then always write()s the AOF to the
// kernel before it answers a client, so what a test wrote survives stop(), kill() (SIGKILL) and
// restart() (same port, same data directory). (With `everysec`, Redis postpones that write while
// a background fsync is running, and a SIGKILL loses acknowledged writes now and then.) RDB
// snapshots are off (`--save ""`).
//
// Every process is started through `setpriv --pdeathsig KILL` when available (it execs, so the
// PID is redis-server's own), so servers die with the test process even when that is SIGKILLed;
// otherwise an exit hook kills them. stop()/kill() only ever signal the PIDs started here.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { trackChild, trackDir, untrackDir } from './cleanup.ts';
import { freePort } from './ports.ts';

export interface RedisHandle {
  url: string;
  port: number;
  /** SIGTERM (Redis flushes the AOF and exits), waits for the exit. */
  stop(): Promise<void>;
  /** stop() if running, then start again on the same port with the same data directory. */
  restart(): Promise<void>;
  /** SIGKILL, waits for the exit. */
  kill(): Promise<void>;
  /** Everything the server logged. */
  output(): string;
  /** PID of the running redis-server (undefined when it is not running). */
  pid(): number | undefined;
  /** SIGKILL and remove the data directory (for `t.after`); the handle is unusable afterwards. */
  dispose(): Promise<void>;
}

export interface RedisClusterHandle {
  /** redis:// URLs of every node (use as rootNodes). */
  urls: string[];
  ports: number[];
  stop(): Promise<void>;
}

export interface SentinelHandle {
  port: number;
  /** The monitored master's name. */
  name: string;
  master: RedisHandle;
  stop(): Promise<void>;
}

const REDIS_BIN = '/usr/bin/redis-server';
const REDIS_CLI = '/usr/bin/redis-cli';
const SETPRIV_BIN = '/usr/bin/setpriv';
const HAVE_SETPRIV = existsSync(SETPRIV_BIN);
const START_TIMEOUT_MS = 10_000;
/**
 * Nodes of a new cluster find each other by gossip, one round a second or so: seconds on a quiet
 * machine, and a full run (two test files at once on 2 cores, one of them the bench smoke) once
 * took more than 10 s. Bounded all the same.
 */
const CLUSTER_JOIN_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 5_000;


async function tempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  trackDir(dir);
  return dir;
}

async function removeDir(dir: string): Promise<void> {
  untrackDir(dir);
  await rm(dir, { recursive: true, force: true });
}

/** Sends one inline command over a raw socket and returns the first reply line (or null). */
function rawCommand(port: number, command: string, timeoutMs = 1_000): Promise<string | null> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    let data = '';
    const done = (value: string | null): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(value);
    };
    const timer = setTimeout(() => done(null), timeoutMs);
    socket.on('error', () => done(null));
    socket.on('connect', () => socket.write(`${command}\r\n`));
    socket.on('data', (chunk) => {
      data += chunk.toString('utf8');
      // Bulk replies ($<len>) are followed by the payload; wait for all of it.
      const bulk = /^\$(\d+)\r\n/.exec(data);
      if (bulk) {
        const len = Number(bulk[1]);
        if (Buffer.byteLength(data) >= bulk[0].length + len + 2) done(data.slice(bulk[0].length, bulk[0].length + len));
      } else if (data.includes('\r\n')) {
        done(data.slice(0, data.indexOf('\r\n')));
      }
    });
  });
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

interface Server {
  child: ChildProcess;
  output: () => string;
}

/** Spawns redis-server with `args` and waits until it answers PING on `port`. */
async function launch(args: string[], port: number, cwd: string): Promise<Server> {
  const child = HAVE_SETPRIV
    ? spawn(SETPRIV_BIN, ['--pdeathsig', 'KILL', '--', REDIS_BIN, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn(REDIS_BIN, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  trackChild(child);
  let out = '';
  child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
  child.stderr!.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`redis-server exited (${child.exitCode ?? child.signalCode}) on port ${port}:\n${out}`);
    }
    if ((await rawCommand(port, 'PING', 500)) === '+PONG') return { child, output: () => out };
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`redis-server did not answer PING on port ${port} within ${START_TIMEOUT_MS} ms:\n${out}`);
    }
    await sleep(20);
  }
}

async function terminate(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
  await exited(child);
  clearTimeout(timer);
}

function serverArgs(port: number, dir: string, extra: string[] = []): string[] {
  return [
    '--port', String(port),
    '--bind', '127.0.0.1',
    '--save', '',
    '--appendonly', 'yes',
    '--appendfsync', 'no',
    '--dir', dir,
    '--logfile', '',
    '--daemonize', 'no',
    ...extra,
  ];
}

/** A standalone redis-server on a free 127.0.0.1 port, in a fresh temp data directory. */
export async function startRedis(extraArgs: string[] = []): Promise<RedisHandle> {
  const dir = await tempDir('certgate-redis-');
  let port = 0;
  let server: Server | undefined;
  // freePort() is a hint (another process may take the port first): try a few.
  for (let attempt = 0; server === undefined; attempt++) {
    port = await freePort();
    try {
      server = await launch(serverArgs(port, dir, extraArgs), port, dir);
    } catch (err) {
      if (attempt >= 3) {
        await removeDir(dir);
        throw err;
      }
    }
  }
  let current: Server = server;
  let log = '';
  let disposed = false;
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    async stop() {
      await terminate(current.child, 'SIGTERM');
    },
    async kill() {
      await terminate(current.child, 'SIGKILL');
    },
    async restart() {
      if (disposed) throw new Error('startRedis: restart() after dispose()');
      await terminate(current.child, 'SIGTERM');
      log += current.output();
      current = await launch(serverArgs(port, dir, extraArgs), port, dir);
    },
    output: () => log + current.output(),
    pid: () => (current.child.exitCode === null && current.child.signalCode === null ? current.child.pid : undefined),
    async dispose() {
      disposed = true;
      await terminate(current.child, 'SIGKILL');
      await removeDir(dir);
    },
  };
}

/**
 * A Sentinel (redis-server --sentinel) on a free port, monitoring a fresh standalone master
 * under the name `name`, with quorum 1. No replicas: enough to exercise discovery through Sentinel.
 */
export async function startSentinel(name = 'certgate-master'): Promise<SentinelHandle> {
  const master = await startRedis();
  const dir = await tempDir('certgate-sentinel-');
  const port = await freePort();
  const conf = join(dir, 'sentinel.conf');
  await writeFile(
    conf,
    [
      `port ${port}`,
      'bind 127.0.0.1',
      `dir ${dir}`,
      `sentinel monitor ${name} 127.0.0.1 ${master.port} 1`,
      `sentinel down-after-milliseconds ${name} 5000`,
      '',
    ].join('\n'),
  );
  let server: Server;
  try {
    server = await launch([conf, '--sentinel'], port, dir);
    // Wait until Sentinel knows the master.
    const deadline = Date.now() + START_TIMEOUT_MS;
    while ((await rawCommand(port, `SENTINEL get-master-addr-by-name ${name}`)) === '*-1') {
      if (Date.now() > deadline) throw new Error('sentinel does not know the master');
      await sleep(20);
    }
  } catch (err) {
    await master.dispose();
    await removeDir(dir);
    throw err;
  }
  return {
    port,
    name,
    master,
    async stop() {
      await terminate(server.child, 'SIGKILL');
      await master.dispose();
      await removeDir(dir);
    },
  };
}

/**
 * A Redis Cluster of `masters` nodes (no replicas) on free ports, slots spread by
 * `redis-cli --cluster create`; resolves when every node reports cluster_state:ok.
 */
export async function startRedisCluster(masters = 3): Promise<RedisClusterHandle> {
  const dir = await tempDir('certgate-redis-cluster-');
  const servers: Server[] = [];
  const ports: number[] = [];
  const stop = async (): Promise<void> => {
    await Promise.all(servers.map((s) => terminate(s.child, 'SIGKILL')));
    await removeDir(dir);
  };
  try {
    const used = new Set<number>();
    const pick = async (): Promise<number> => {
      for (;;) {
        const p = await freePort();
        if (!used.has(p)) {
          used.add(p);
          return p;
        }
      }
    };
    for (let i = 0; i < masters; i++) {
      const port = await pick();
      const busPort = await pick();
      const nodeDir = join(dir, String(port));
      await mkdir(nodeDir);
      ports.push(port);
      servers.push(
        await launch(
          serverArgs(port, nodeDir, [
            '--cluster-enabled', 'yes',
            '--cluster-config-file', join(nodeDir, 'nodes.conf'),
            '--cluster-port', String(busPort),
            '--cluster-node-timeout', '3000',
          ]),
          port,
          nodeDir,
        ),
      );
    }
    const create = spawnSync(
      REDIS_CLI,
      ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'],
      { encoding: 'utf8', timeout: CLUSTER_JOIN_TIMEOUT_MS },
    );
    if (create.status !== 0) throw new Error(`redis-cli --cluster create failed (${create.signal ? `killed by ${create.signal} after ${CLUSTER_JOIN_TIMEOUT_MS} ms` : `exit ${create.status}`}):\n${create.stdout}\n${create.stderr}`);
    const deadline = Date.now() + CLUSTER_JOIN_TIMEOUT_MS;
    for (const port of ports) {
      for (;;) {
        const info = await rawCommand(port, 'CLUSTER INFO');
        if (info?.includes('cluster_state:ok')) break;
        if (Date.now() > deadline) throw new Error(`cluster node ${port} not ok: ${info}`);
        await sleep(50);
      }
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { urls: ports.map((p) => `redis://127.0.0.1:${p}`), ports, stop };
}
