// The http-01 responder under a flood of unknown challenge requests (issue 13, noise
// amplification): a token that is not an ACME token is answered 404 without a storage read;
// unknown well-formed tokens are logged sampled, with token and User-Agent cut; a real
// validation is answered and logged in full every time.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Agent, createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Http01Solver } from '../../src/acme/solvers.ts';
import { FileStorage } from '../../src/storage/file/store.ts';
import { CountingStorage } from '../support/gateway.ts';
import { capturingLogger, type LogLine } from '../support/log-lines.ts';
import { tmpDir } from '../support/tmp.ts';
import { plainGet } from '../support/clients.ts';

const LONG_UA = 'Mozilla/5.0 '.repeat(200);
/** What the solver lets through per interval (src/acme/solvers.ts UNKNOWN_LOG). */
const PER_INTERVAL = 5;
const INTERVAL_MS = 10_000;

const get = (port: number, path: string, agent: Agent) => plainGet(port, path, { agent, headers: { host: 'flood.example', 'user-agent': LONG_UA } });

/** `count` requests, `concurrency` at a time. */
async function flood(count: number, concurrency: number, one: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) await one(next++);
    }),
  );
}

describe('http-01 responder under a flood of unknown challenge requests', () => {
  let server: Server;
  let port: number;
  let storage: CountingStorage;
  let solver: Http01Solver;
  let lines: LogLine[];
  const agent = new Agent({ keepAlive: true, maxSockets: 20 });
  const cleanups: Array<() => Promise<unknown>> = [];

  before(async () => {
    const dir = await tmpDir({ after: (fn) => void cleanups.push(fn as () => Promise<unknown>) }, 'certgate-http01-');
    storage = new CountingStorage(await FileStorage.open(dir));
    const captured = capturingLogger('info');
    lines = captured.lines;
    solver = new Http01Solver(storage, captured.logger);
    server = createServer((req, res) => {
      if (!solver.handle(req, res)) res.writeHead(418).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  after(async () => {
    agent.destroy();
    await new Promise((resolve) => server.close(resolve));
    await storage.close();
    for (const cleanup of cleanups) await cleanup();
  });

  test('tokens that are not ACME tokens (too short, bad characters): 404 and no storage read', async () => {
    const reads = storage.counts.get;
    const tokens = ['x', 'abc', 'a'.repeat(21), 'wp-login.php', `${'a'.repeat(43)}.php`, '..%2f..%2fetc%2fpasswd'];
    for (let i = 0; i < 200; i++) {
      const res = await get(port, `/.well-known/acme-challenge/${tokens[i % tokens.length]!}`, agent);
      assert.equal(res.status, 404);
    }
    assert.equal(storage.counts.get - reads, 0, 'not one storage read');
  });

  test('2,000 unknown well-formed tokens: a handful of log lines, token and User-Agent cut', async () => {
    const before = lines.length;
    const started = performance.now();
    await flood(2000, 20, async () => {
      const res = await get(port, `/.well-known/acme-challenge/${randomBytes(32).toString('base64url')}`, agent);
      assert.equal(res.status, 404);
    });
    const elapsedMs = performance.now() - started;
    const logged = lines.slice(before).filter((l) => l.step === 'http-01-validation');
    // However slow the machine, the flood spans at most this many sampling intervals.
    const intervals = Math.ceil(elapsedMs / INTERVAL_MS) + 1;
    assert.ok(logged.length >= 1, 'unknown tokens are still visible in the log');
    assert.ok(logged.length <= PER_INTERVAL * intervals, `${logged.length} lines for 2,000 requests in ${Math.round(elapsedMs)} ms`);
    for (const line of logged) {
      assert.ok(String(line.ua).length <= 101, `User-Agent cut: ${String(line.ua).length} chars`);
      assert.ok(String(line.token).length <= 17, `token cut: ${String(line.token)}`);
      assert.equal(line.found, false);
    }
    const bytes = logged.reduce((sum, l) => sum + JSON.stringify(l).length, 0);
    assert.ok(bytes < 5_000 * intervals, `${bytes} bytes of log`);
  });

  test('a pending challenge is answered with its key authorization and logged in full, flood or not', async () => {
    const token = randomBytes(32).toString('base64url');
    await solver.present('real.example', token, `${token}.thumbprint`);
    try {
      const res = await get(port, `/.well-known/acme-challenge/${token}`, agent);
      assert.equal(res.status, 200);
      assert.equal(res.body, `${token}.thumbprint`);
      const line = lines.find((l) => l.token === token);
      assert.ok(line, 'a real validation is always logged');
      assert.equal(line.found, true);
      assert.ok(String(line.ua).length <= 101);
    } finally {
      await solver.cleanup('real.example', token);
    }
  });
});
