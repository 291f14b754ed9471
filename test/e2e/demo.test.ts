// Issue 2 acceptance: `npm run demo` starts Pebble, an upstream and the gateway, and prints a
// curl command that works. Runs the demo script itself (what `npm run demo` runs after set-up)
// and executes the first curl command it prints, verbatim.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';
import { runProcess } from '../support/process.ts';

test('the demo prints a curl command that works', async () => {
  const demo = runProcess(['--import', 'tsx', 'scripts/demo.ts']);
  try {
    await demo.waitFor(/DEMO READY/, 60_000);
    const command = /^\s*(curl --cacert \S+ --resolve \S+ https:\/\/hello\.demo\.test:\d+\/)\s*$/m.exec(demo.output())?.[1];
    assert.ok(command, `demo printed a curl command:\n${demo.output()}`);
    const stdout = await new Promise<string>((resolve, reject) => {
      execFile('sh', ['-c', `${command} --silent --show-error --max-time 60`], (err, out, errOut) => (err ? reject(new Error(`${command}: ${errOut}`)) : resolve(out)));
    });
    assert.match(stdout, /Hello from the demo upstream!/);
    assert.match(stdout, /host: hello\.demo\.test/);
    assert.match(stdout, /x-forwarded-proto: https/);
  } finally {
    await demo.stop('SIGINT');
  }
  assert.equal(demo.child.exitCode, 0, `demo exits cleanly on Ctrl-C:\n${demo.output().slice(-2000)}`);
});
