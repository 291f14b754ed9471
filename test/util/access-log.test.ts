// The access log's own write path produces, byte for byte except the timestamp, the line
// `logger.child(bindings).info(fields, 'access')` would, for loggers made by createLogger, and
// respects the log level. Lines are handed to the destination in batches (issue 19, item 4), and
// a process that exits before a batch is due still writes every line.
import assert from 'node:assert/strict';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { after, before, test } from 'node:test';
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { ACCESS_BATCH_CHARS, createAccessLog, createLogger, type AccessEntry } from '../../src/util/log.ts';
import { NODE, PROJECT_ROOT } from '../support/process.ts';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'certgate-accesslog-'));
});
after(() => rm(dir, { recursive: true, force: true }));

const END = 'end of test output';

/**
 * The lines `write` made the logger write to a file (`write` flushes its access logs). A
 * warn-level marker written after that follows every line before it through the same
 * destination: the lines are all there once the marker is (no fixed wait for the writes).
 */
async function linesWrittenBy(level: string, write: (logger: ReturnType<typeof createLogger>) => void): Promise<Array<Record<string, unknown>>> {
  const file = join(dir, `${level}-${Math.random().toString(36).slice(2)}.log`);
  const fd = openSync(file, 'w');
  try {
    const logger = createLogger({ level, fd });
    write(logger);
    await nextTurn();
    logger.warn(END);
    logger.flush();
    for (const deadline = Date.now() + 10_000; !readFileSync(file, 'utf8').includes(END); ) {
      assert.ok(Date.now() < deadline, `the marker line never reached ${file}`);
      await sleep(5);
    }
  } finally {
    closeSync(fd);
  }
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.msg !== END);
}

test('an access line is the one pino would write (same fields, same order)', async () => {
  const fields = { host: 'a.example.test', method: 'GET', path: '/p"\\\n\u2028', status: 200, upstream: null, ms: 1.5, bytes: 12, error: undefined, aborted: true };
  const [viaPino, viaAccessLog] = await linesWrittenBy('info', (logger) => {
    logger.child({ component: 'proxy' }).info({ ...fields }, 'access');
    const access = createAccessLog(logger, { component: 'proxy' });
    access.write({ ...fields });
    access.flush();
  });
  assert.ok(viaPino && viaAccessLog);
  assert.equal(typeof viaAccessLog.time, 'string');
  assert.deepEqual(Object.keys(viaAccessLog), Object.keys(viaPino));
  assert.deepEqual({ ...viaAccessLog, time: 0 }, { ...viaPino, time: 0 });
  assert.equal(viaAccessLog.pid, process.pid);
  assert.ok(!('error' in viaAccessLog), 'undefined fields are left out');
});

test('many lines in one turn all arrive, in order', async () => {
  const lines = await linesWrittenBy('info', (logger) => {
    const access = createAccessLog(logger, { component: 'proxy' });
    for (let i = 0; i < 500; i++) access.write({ path: `/${i}`, status: 200 });
    access.flush();
  });
  assert.deepEqual(
    lines.map((l) => l.path),
    Array.from({ length: 500 }, (_, i) => `/${i}`),
  );
});

test('no access lines above info level', async () => {
  const lines = await linesWrittenBy('warn', (logger) => {
    const access = createAccessLog(logger, { component: 'proxy' });
    access.write({ path: '/', status: 200 });
    access.request(entry({}));
    access.flush();
  });
  assert.deepEqual(lines, []);
});

const entry = (over: Partial<AccessEntry>): AccessEntry => ({
  host: 'a.example.test',
  client: '192.0.2.1',
  method: 'GET',
  path: '/',
  status: 200,
  upstream: 'http://127.0.0.1:8080',
  ms: 1.5,
  bytes: 12,
  ...over,
});

test("request(): the proxy's fast path writes the line pino would, for every kind of field value", async () => {
  const entries: AccessEntry[] = [
    entry({}),
    entry({ host: null, client: null, upstream: null, method: undefined, path: undefined }),
    entry({ path: '/p"\\\n\u2028\u0000\ud800x', host: 'é.example.test', method: 'M"' }),
    entry({ path: `/${'x'.repeat(300)}`, error: 'UPSTREAM_TIMEOUT', aborted: true }),
    entry({ ms: Number.NaN, bytes: 0, status: 502, aborted: false, error: undefined }),
  ];
  const lines = await linesWrittenBy('info', (logger) => {
    const access = createAccessLog(logger, { component: 'proxy' });
    for (const e of entries) {
      logger.child({ component: 'proxy' }).info({ ...e, aborted: e.aborted || undefined }, 'access');
      access.request(e);
    }
    access.flush();
  });
  // pino's lines go out at once, the access log's in its batch after them.
  assert.equal(lines.length, entries.length * 2);
  for (let i = 0; i < entries.length; i++) {
    const viaPino = lines[i]!;
    const viaRequest = lines[entries.length + i]!;
    assert.deepEqual(Object.keys(viaRequest), Object.keys(viaPino), `entry ${i}`);
    assert.deepEqual({ ...viaRequest, time: 0 }, { ...viaPino, time: 0 }, `entry ${i}`);
  }
});

test('lines reach the destination in batches, not one write per event-loop turn', async () => {
  const logger = createLogger({ fd: openSync(join(dir, 'batches.log'), 'w') });
  const stream = (logger as unknown as Record<symbol, { write(s: string): unknown }>)[pino.symbols.streamSym]!;
  let writes = 0;
  let chars = 0;
  const write = stream.write.bind(stream);
  stream.write = (s: string) => {
    writes++;
    chars += s.length;
    return write(s);
  };
  const access = createAccessLog(logger, { component: 'proxy' });
  // 200 turns of 5 requests each: a busy keep-alive proxy.
  for (let turn = 0; turn < 200; turn++) {
    for (let i = 0; i < 5; i++) access.request(entry({ path: `/${turn}/${i}` }));
    await nextTurn();
  }
  access.flush();
  assert.ok(chars > 1000 * 100, `${chars} characters written`);
  assert.ok(writes <= Math.ceil(chars / ACCESS_BATCH_CHARS) + 2, `${writes} writes for ${chars} characters`);
});

test('a process that exits before its batch is due still writes every line', async () => {
  const file = join(dir, 'exit.log');
  const script = [
    "import { openSync } from 'node:fs';",
    "import { createAccessLog, createLogger } from './src/util/log.ts';",
    `const access = createAccessLog(createLogger({ fd: openSync(${JSON.stringify(file)}, 'w') }), { component: 'proxy' });`,
    "for (let i = 0; i < 1000; i++) access.request({ host: 'a.test', client: null, method: 'GET', path: '/' + i, status: 200, upstream: null, ms: 1, bytes: 2 });",
    'process.exit(0);',
  ].join('\n');
  await new Promise<void>((resolve, reject) => {
    execFile(NODE, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: PROJECT_ROOT, timeout: 60_000 }, (err, _out, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve()));
  });
  const paths = readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { path: string }).path);
  // Every line once. Not necessarily in order: a batch handed to an asynchronous write just
  // before process.exit() can land after the lines the exit listener writes synchronously (the
  // write in flight cannot be waited for there); a graceful stop flushes in order.
  const index = (p: string): number => Number(p.slice(1));
  assert.deepEqual(
    [...paths].sort((a, b) => index(a) - index(b)),
    Array.from({ length: 1000 }, (_, i) => `/${i}`),
  );
});
