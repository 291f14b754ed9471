// Issue 16 item 5 acceptance: reload and drain, with `certgate run` as a real process.
//   - SIGHUP with a changed route while a slow request is in flight: the new route serves, the
//     slow request completes 200; a bad file is refused (one log line) and the old route serves;
//     a key that cannot change live is named in a "needs a restart" line, the rest applies
//   - SIGTERM with a slow request in flight: it completes, exit 0; shutdownTimeout cuts a longer one
//   - workers: 2: SIGHUP to the primary reaches every worker; SIGUSR2 under wrk: 0 failed
//     requests, every worker PID changed
// No CA is needed: nothing is issued (the fallback certificate serves, the client does not verify).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { stringify } from 'yaml';
import { insecureGet } from '../support/admin.ts';
import { freePort } from '../support/ports.ts';
import { CERTGATE_BIN, runProcess, type RunningProcess } from '../support/process.ts';
import { startUpstream, type FakeUpstream } from '../support/upstream.ts';

const HOST = 'app.reload.test';

/** An upstream answering its name; /slow after `slowMs`, counting the slow requests it received. */
async function namedUpstream(name: string, slowMs = 3000): Promise<FakeUpstream & { slowSeen: () => number }> {
  let slow = 0;
  const upstream = await startUpstream((req, res) => {
    if (req.url === '/slow') {
      slow++;
      setTimeout(() => res.writeHead(200, { 'content-type': 'text/plain' }).end(`${name} slow`), slowMs);
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain' }).end(name);
  });
  return Object.assign(upstream, { slowSeen: () => slow });
}

async function waitUntil(what: string, check: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A config file for one gateway on these ports, routing HOST to `upstream`. */
function gatewayConfig(dir: string, ports: { https: number; http: number }, upstream: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    workers: 1,
    listen: { https: `127.0.0.1:${ports.https}`, http: `127.0.0.1:${ports.http}`, admin: false },
    storage: { file: { path: join(dir, 'data') } },
    acme: { directory: 'https://127.0.0.1:9/dir' },
    proxy: { routes: [{ hosts: [HOST], upstream }], accessLog: false },
    // HOST has no certificate: it is served over the fallback (the default `alert` refuses it).
    tls: { denied: 'fallback' },
    ...extra,
  };
}

/** Output lines after `from` (a length of output()) matching `pattern`. */
const linesAfter = (proc: RunningProcess, from: number, pattern: RegExp): string[] => proc.output().slice(from).split('\n').filter((l) => pattern.test(l));

describe('SIGHUP reloads the config file (workers: 1)', () => {
  let dir: string;
  let file: string;
  let proc: RunningProcess;
  let oldApp: Awaited<ReturnType<typeof namedUpstream>>;
  let newApp: Awaited<ReturnType<typeof namedUpstream>>;
  let ports: { https: number; http: number };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'certgate-reload-'));
    oldApp = await namedUpstream('old');
    newApp = await namedUpstream('new');
    ports = { https: await freePort(), http: await freePort() };
    file = join(dir, 'certgate.yaml');
    await writeFile(file, stringify(gatewayConfig(dir, ports, oldApp.origin)));
    proc = runProcess([CERTGATE_BIN, 'run', '--config', file]);
    await proc.waitFor(/certgate listening/, 60_000);
  });

  after(async () => {
    await proc?.stop();
    await oldApp?.close();
    await newApp?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('a changed route serves after SIGHUP; the slow request in flight completes on the old one', async () => {
    assert.equal((await insecureGet(HOST, ports.https)).body, 'old');
    const slow = insecureGet(HOST, ports.https, '/slow');
    await waitUntil('the slow request reached the old upstream', () => oldApp.slowSeen() === 1);
    const from = proc.output().length;
    await writeFile(file, stringify(gatewayConfig(dir, ports, newApp.origin)));
    proc.child.kill('SIGHUP');
    await proc.waitFor(/config reloaded/);
    assert.equal(linesAfter(proc, from, /config reloaded/).length, 1, proc.output());
    assert.match(linesAfter(proc, from, /config reloaded/)[0]!, /"changed":\["proxy\.routes"\]/);
    assert.equal((await insecureGet(HOST, ports.https)).body, 'new');
    const done = await slow;
    assert.equal(done.status, 200);
    assert.equal(done.body, 'old slow');
    assert.equal(proc.child.exitCode, null, 'still running');
  });

  test('a bad file is refused with one log line; the running config keeps serving', async () => {
    const from = proc.output().length;
    await writeFile(file, stringify({ ...gatewayConfig(dir, ports, oldApp.origin), proxy: { routes: 'not a list' } }));
    proc.child.kill('SIGHUP');
    await proc.waitFor(/config reload refused/);
    const refused = linesAfter(proc, from, /config reload refused/);
    assert.equal(refused.length, 1, proc.output());
    assert.match(refused[0]!, /proxy\.routes/);
    assert.equal((await insecureGet(HOST, ports.https)).body, 'new');
    // Not YAML at all: refused the same way.
    const from2 = proc.output().length;
    await writeFile(file, 'proxy: [unclosed\n');
    proc.child.kill('SIGHUP');
    await waitUntil('the second refusal', () => linesAfter(proc, from2, /config reload refused/).length === 1);
    assert.equal((await insecureGet(HOST, ports.https)).body, 'new');
  });

  test('keys that cannot change live are named in a warning; the live ones still apply', async () => {
    const from = proc.output().length;
    const changed = gatewayConfig(dir, ports, oldApp.origin, { renewal: { concurrency: 7 } });
    await writeFile(file, stringify(changed));
    proc.child.kill('SIGHUP');
    await waitUntil('the reload lines', () => linesAfter(proc, from, /config reloaded/).length === 1 && linesAfter(proc, from, /need a restart/).length === 1);
    assert.match(linesAfter(proc, from, /need a restart/)[0]!, /renewal\.concurrency/);
    assert.equal((await insecureGet(HOST, ports.https)).body, 'old');
  });
});

describe('SIGTERM drains (workers: 1)', () => {
  let dir: string;
  let app: Awaited<ReturnType<typeof namedUpstream>>;
  let slower: Awaited<ReturnType<typeof namedUpstream>>;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'certgate-drain-'));
    app = await namedUpstream('app');
    // Answers /slow after 60 s: far longer than the 2 s shutdownTimeout below.
    slower = await namedUpstream('slower', 60_000);
  });

  after(async () => {
    await app?.close();
    await slower?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function startGateway(upstream: string, extra: Record<string, unknown> = {}): Promise<{ proc: RunningProcess; port: number; exit: Promise<number | null> }> {
    const ports = { https: await freePort(), http: await freePort() };
    const file = join(dir, `certgate-${ports.https}.yaml`);
    await writeFile(file, stringify(gatewayConfig(dir, ports, upstream, extra)));
    const proc = runProcess([CERTGATE_BIN, 'run', '--config', file]);
    const exit = new Promise<number | null>((resolve) => proc.child.once('exit', (code) => resolve(code)));
    await proc.waitFor(/certgate listening/, 60_000);
    return { proc, port: ports.https, exit };
  }

  test('a slow request in flight at SIGTERM completes, then the process exits 0', async () => {
    const { proc, port, exit } = await startGateway(app.origin);
    try {
      const slow = insecureGet(HOST, port, '/slow');
      await waitUntil('the slow request reached the upstream', () => app.slowSeen() === 1);
      proc.child.kill('SIGTERM');
      const done = await slow;
      assert.equal(done.status, 200);
      assert.equal(done.body, 'app slow');
      assert.equal(done.headers.connection, 'close', 'a response finished while draining closes its connection');
      assert.equal(await exit, 0, proc.output());
    } finally {
      await proc.stop('SIGKILL');
    }
  });

  test('shutdownTimeout cuts a request longer than it; the process still exits 0', async () => {
    const { proc, port, exit } = await startGateway(slower.origin, { shutdownTimeout: '2s' });
    try {
      const slow = insecureGet(HOST, port, '/slow').then(
        (r) => `answered ${r.status}`,
        (err: Error) => `failed: ${err.message}`,
      );
      await waitUntil('the slow request reached the upstream', () => slower.slowSeen() === 1);
      proc.child.kill('SIGTERM');
      // The upstream would answer 60 s after the request: the process exits long before.
      assert.equal(await exit, 0, proc.output());
      assert.match(await slow, /^failed/);
      assert.match(proc.output(), /requests still in flight at shutdownTimeout were cut off/);
    } finally {
      await proc.stop('SIGKILL');
    }
  });
});

/** Runs wrk to completion; its output. */
function wrk(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('wrk', args, { timeout: 120_000 }, (err, stdout, stderr) => (err ? reject(new Error(`wrk ${args.join(' ')}: ${err.message}\n${stderr}`)) : resolve(stdout)));
  });
}

/** The PIDs of the workers that logged "gateway listening" in `output`. */
const listeningPids = (output: string): number[] =>
  output
    .split('\n')
    .filter((l) => l.includes('"msg":"gateway listening"'))
    .map((l) => (JSON.parse(l) as { pid: number }).pid);

describe('SIGUSR2 replaces the workers one at a time (workers: 2)', () => {
  let dir: string;
  let app: FakeUpstream;
  let other: FakeUpstream;
  let proc: RunningProcess;
  let port: number;
  let file: string;
  let ports: { https: number; http: number };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'certgate-rolling-'));
    app = await namedUpstream('app');
    other = await namedUpstream('other');
    ports = { https: await freePort(), http: await freePort() };
    port = ports.https;
    file = join(dir, 'certgate.yaml');
    await writeFile(file, stringify({ ...gatewayConfig(dir, ports, app.origin), workers: 2, proxy: { upstream: app.origin, accessLog: false } }));
    proc = runProcess([CERTGATE_BIN, 'run', '--config', file]);
    await proc.waitFor(/"workers":2.*certgate listening/, 60_000);
  });

  after(async () => {
    await proc?.stop();
    await app?.close();
    await other?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('SIGHUP to the primary reaches every worker', async () => {
    const from = proc.output().length;
    await writeFile(file, stringify({ ...gatewayConfig(dir, ports, other.origin), workers: 2, proxy: { upstream: app.origin, routes: [{ hosts: [HOST], upstream: other.origin }], accessLog: false } }));
    proc.child.kill('SIGHUP');
    await proc.waitFor(/config reloaded/);
    assert.match(linesAfter(proc, from, /config reloaded/)[0]!, /"changed":\["proxy\.routes"\]/);
    // Fresh connections spread over both workers (SO_REUSEPORT); the primary has sent the config
    // before it logged, so allow a moment for the IPC message to arrive.
    const deadline = Date.now() + 10_000;
    let seen: string[];
    do {
      seen = [];
      for (let i = 0; i < 12; i++) seen.push((await insecureGet(HOST, port)).body);
    } while (seen.some((s) => s !== 'other') && Date.now() < deadline);
    assert.deepEqual(seen, Array<string>(12).fill('other'));
    assert.equal((await insecureGet('default.reload.test', port)).body, 'app');
  });

  test('under wrk: 0 failed requests, and every worker PID changed', async () => {
    const before = listeningPids(proc.output());
    assert.equal(before.length, 2, proc.output());
    // Bounded load: 2 threads, 20 keep-alive connections, for long enough to cover the restart.
    const load = wrk(['-t2', '-c20', '-d15s', '--timeout', '10s', `https://127.0.0.1:${port}/`]);
    await new Promise((r) => setTimeout(r, 1500));
    const from = proc.output().length;
    proc.child.kill('SIGUSR2');
    await proc.waitFor(/rolling restart done/, 90_000);
    const out = await load;
    assert.match(out, /requests in/, out);
    assert.equal(Number(/(\d+) requests in/.exec(out)![1]) > 0, true, out);
    assert.doesNotMatch(out, /Non-2xx or 3xx responses/, `wrk saw failed responses:\n${out}\n${proc.output().slice(from)}`);
    assert.doesNotMatch(out, /Socket errors/, `wrk saw socket errors:\n${out}\n${proc.output().slice(from)}`);
    assert.match(proc.output().slice(from), /"replaced":2/);
    const afterPids = listeningPids(proc.output().slice(from));
    assert.equal(afterPids.length, 2, proc.output().slice(from));
    for (const pid of afterPids) assert.ok(!before.includes(pid), `worker ${pid} is new`);
    for (const pid of before) assert.throws(() => process.kill(pid, 0), 'the old worker exited');
    // The new workers serve, with the config as reloaded.
    assert.equal((await insecureGet(HOST, port)).body, 'other');
    assert.equal((await insecureGet('default.reload.test', port)).body, 'app');
  });
});
