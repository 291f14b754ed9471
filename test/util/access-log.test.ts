// The access log's own write path produces, byte for byte except the timestamp, the line
// `logger.child(bindings).info(fields, 'access')` would, for loggers made by createLogger, and
// respects the log level.
import assert from 'node:assert/strict';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import { createAccessLog, createLogger } from '../../src/util/log.ts';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'certgate-accesslog-'));
});
after(() => rm(dir, { recursive: true, force: true }));

const END = 'end of test output';

/**
 * The lines `write` made the logger write to a file. A warn-level marker written after the access
 * log's end-of-turn flush follows every line before it through the same destination: the lines
 * are all there once the marker is (no fixed wait for the asynchronous writes).
 */
async function linesWrittenBy(level: string, write: (logger: ReturnType<typeof createLogger>) => void): Promise<Array<Record<string, unknown>>> {
  const file = join(dir, `${level}-${Math.random().toString(36).slice(2)}.log`);
  const fd = openSync(file, 'w');
  try {
    const logger = createLogger({ level, fd });
    write(logger);
    await nextTurn(); // the access log hands its lines over at the end of the turn they were written in
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
    createAccessLog(logger, { component: 'proxy' }).write({ ...fields });
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
  });
  assert.deepEqual(
    lines.map((l) => l.path),
    Array.from({ length: 500 }, (_, i) => `/${i}`),
  );
});

test('no access lines above info level', async () => {
  const lines = await linesWrittenBy('warn', (logger) => createAccessLog(logger, { component: 'proxy' }).write({ path: '/', status: 200 }));
  assert.deepEqual(lines, []);
});
