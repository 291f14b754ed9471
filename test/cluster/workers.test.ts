// The primary reads `workers` from the raw config to fork before validating
// (src/cluster/workers.ts requestedWorkerCount). That reading must agree with the schema: a
// value it accepts is one the schema accepts with the same count, and whatever the schema
// refuses it leaves undefined (the primary then validates first and reports the problem).
import assert from 'node:assert/strict';
import { availableParallelism } from 'node:os';
import { test } from 'node:test';
import { autoWorkerCount, requestedWorkerCount, workerCount } from '../../src/cluster/workers.ts';
import { restartWithYoungGenerationCap, workerExecArgv } from '../../src/cluster/young-generation.ts';
import { parseConfig } from '../../src/config/load.ts';

const values: unknown[] = [undefined, 'auto', 1, 2, 64, 256, 0, -1, 257, 1.5, '2', 'all', null, true, [2], { n: 2 }];

test('the workers read before validation agree with the schema for every kind of value', () => {
  for (const value of values) {
    const raw = value === undefined ? {} : { workers: value };
    const early = requestedWorkerCount(raw);
    let validated: number | undefined;
    try {
      validated = workerCount(parseConfig(raw, { baseDir: '/tmp' }));
    } catch {
      validated = undefined;
    }
    assert.equal(early, validated, `workers: ${JSON.stringify(value)}`);
  }
  assert.equal(requestedWorkerCount({}), autoWorkerCount(availableParallelism()), 'default is auto');
  assert.equal(requestedWorkerCount(null), undefined, 'not a mapping: validate first');
});

test('workers: auto is one process on 2 CPUs or fewer, else one per CPU, before and after validation', () => {
  const validated = workerCount(parseConfig({}, { baseDir: '/tmp' }), 1);
  assert.equal(validated, 1, 'the default is auto');
  for (const [cpus, expected] of [[1, 1], [2, 1], [3, 3], [4, 4], [16, 16]] as const) {
    assert.equal(autoWorkerCount(cpus), expected, `${cpus} CPUs`);
    assert.equal(requestedWorkerCount({}, cpus), expected, `${cpus} CPUs, workers unset, read before validation`);
    assert.equal(requestedWorkerCount({ workers: 'auto' }, cpus), expected, `${cpus} CPUs, workers: auto, read before validation`);
    assert.equal(workerCount(parseConfig({ workers: 'auto' }, { baseDir: '/tmp' }), cpus), expected, `${cpus} CPUs, validated`);
  }
  // A number is taken as given, whatever the machine.
  assert.equal(requestedWorkerCount({ workers: 2 }, 1), 2);
  assert.equal(workerCount(parseConfig({ workers: 2 }, { baseDir: '/tmp' }), 1), 2);
});

test('workers cap the young generation unless the operator chose a size', () => {
  assert.deepEqual(workerExecArgv(['--import', 'tsx'], ''), ['--import', 'tsx', '--max-semi-space-size=16']);
  assert.deepEqual(workerExecArgv(['--max-semi-space-size=64'], ''), ['--max-semi-space-size=64']);
  assert.deepEqual(workerExecArgv([], '--max-old-space-size=512 --max-semi-space-size=8'), []);
});

test('a single process restarts itself in place with the young-generation cap, unless the flag is set', () => {
  const calls: Array<{ file: string; args: string[] }> = [];
  const execve = ((file: string, args: string[]) => {
    calls.push({ file, args });
  }) as unknown as (file: string, args: string[], env: NodeJS.ProcessEnv) => never;
  restartWithYoungGenerationCap(['--import', 'tsx'], '', execve);
  assert.equal(calls.length, 1);
  assert.equal(calls[0]!.file, process.execPath);
  assert.deepEqual(calls[0]!.args, [process.execPath, '--import', 'tsx', '--max-semi-space-size=16', ...process.argv.slice(1)], 'the same command, flag added before the script');
  restartWithYoungGenerationCap(['--max-semi-space-size=64'], '', execve);
  restartWithYoungGenerationCap([], '--max-semi-space-size=8', execve);
  assert.equal(calls.length, 1, 'an operator-chosen size: no restart');
});
