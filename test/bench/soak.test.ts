// Issue 19 item 6: `npm run bench -- --soak` in its short form (`--soak 90s --smoke`: ~90 s of
// load plus ~20 s of set-up, at the smaller rates): certgate with default workers on Redis
// against a Pebble issuing 30-second certificates, under on-demand issuance, renewals, keep-alive
// proxy traffic, random-SNI noise and a Redis kill + restart. Checks that the run completes, the
// samples are there (tree RSS/PSS from /proc; heap, handles and event-loop delay from the admin
// API's /metrics), every series was judged and passed, nothing failed outside the restart's
// window, and names were issued and renewed, also after the restart. Never how fast.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { SeriesKey, SoakResult } from '../../bench/soak.ts';
import { NODE, PROJECT_ROOT } from '../support/process.ts';

const SOAK = '90s';
/** 90 s of load, set-up (build, Pebble, Redis, three first issuances) and a loaded machine's slack. */
const BOUND_MS = 175_000;
const SERIES: SeriesKey[] = ['rssMiB', 'pssMiB', 'heapUsedMiB', 'handles', 'loopP99Ms'];

describe(`npm run bench -- --soak ${SOAK} --smoke`, () => {
  let dir: string;
  let soak: SoakResult;
  let output = '';
  let code: number | null;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'certgate-soak-test-'));
    const out = join(dir, 'soak.json');
    // Its own process group, so that a run past the bound is stopped with everything it started.
    const child = spawn(NODE, ['--import', 'tsx', 'bench/run.ts', '--soak', SOAK, '--smoke', '--out', out], { cwd: PROJECT_ROOT, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    child.stdout.on('data', (c: Buffer) => (output += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (output += c.toString('utf8')));
    code = await new Promise<number | null>((resolve) => {
      const bound = setTimeout(() => process.kill(-child.pid!, 'SIGKILL'), BOUND_MS);
      child.once('exit', (exitCode) => {
        clearTimeout(bound);
        resolve(exitCode);
      });
    });
    const text = await readFile(out, 'utf8').catch(() => assert.fail(`soak exited ${code} without results:\n${output.slice(-6000)}`));
    soak = (JSON.parse(text) as { soak: SoakResult }).soak;
  });

  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('the soak ran to the end, passed, and printed its table', () => {
    assert.equal(code, 0, `soak exited ${code}:\n${output.slice(-6000)}`);
    assert.deepEqual(soak.problems, []);
    assert.equal(soak.pass, true);
    assert.match(output, /^series +\| +start +\| +end +\| +max/m);
    assert.match(output, /^soak: PASS$/m);
  });

  test('samples cover the run, with every series read (the default metrics are exported)', () => {
    const durationS = soak.settings.durationMs / 1000;
    assert.ok(soak.samples.length >= durationS / (soak.settings.sampleMs / 1000) - 3, `samples: ${soak.samples.length}`);
    assert.ok(soak.samples[soak.samples.length - 1]!.tS >= durationS - 1);
    for (const key of SERIES) {
      const read = soak.samples.filter((s) => typeof s[key] === 'number' && s[key] >= 0).length;
      assert.ok(read >= soak.samples.length * 0.9, `${key}: read in ${read} of ${soak.samples.length} samples`);
    }
  });

  test('every series was judged over the second half and stayed within its bound', () => {
    assert.deepEqual(soak.verdicts.map((v) => v.name).length, SERIES.length);
    assert.ok(soak.judgeFromS >= soak.settings.durationMs / 2000 && soak.judgeFromS >= soak.redis!.windowEndS);
    for (const v of soak.verdicts) {
      assert.ok(Number.isFinite(v.slopePerMin) && Number.isFinite(v.bound) && v.points >= 5, JSON.stringify(v));
      assert.ok(v.pass && v.growth <= v.bound, JSON.stringify(v));
    }
  });

  test('Redis was killed and came back; no request failed outside that window', () => {
    const r = soak.redis!;
    assert.ok(r.killedS > 0 && r.backS > r.killedS && r.windowEndS > r.backS, JSON.stringify(r));
    for (const [load, l] of Object.entries(soak.loads)) {
      assert.equal(l.failedOutside, 0, `${load}: ${JSON.stringify(l.failuresOutside)}`);
      assert.ok(l.ok > 0, `${load}: nothing succeeded`);
    }
  });

  test('new names were issued to the end, and short-lived certificates renewed after the restart', () => {
    assert.ok(soak.issued >= soak.loads.newNames.ok, `issued ${soak.issued}, new names ok ${soak.loads.newNames.ok}`);
    assert.ok(soak.newNamesOkLastThird > 0);
    assert.ok(soak.renewed > 0 && soak.renewedAfterWindow > 0, `renewed ${soak.renewed}, after the window ${soak.renewedAfterWindow}`);
  });
});
