// Issue 2 acceptance: `npm run demo` starts Pebble, an upstream and the gateway, and prints a
// curl command that works. Runs the demo script itself (what `npm run demo` runs after set-up)
// and executes the first curl command it prints, verbatim.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';
import { runProcess } from '../support/process.ts';

function sh(command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('sh', ['-c', command], (err, out, errOut) => (err ? reject(new Error(`${command}: ${errOut}`)) : resolve(out)));
  });
}

test('the demo prints curl commands that work, including binding a domain through the admin API', async () => {
  const demo = runProcess(['--import', 'tsx', 'scripts/demo.ts']);
  try {
    await demo.waitFor(/DEMO READY/, 60_000);
    const command = /^\s*(curl --cacert \S+ --resolve \S+ https:\/\/hello\.demo\.test:\d+\/)\s*$/m.exec(demo.output())?.[1];
    assert.ok(command, `demo printed a curl command:\n${demo.output()}`);
    const stdout = await sh(`${command} --silent --show-error --max-time 60`);
    assert.match(stdout, /Hello from the demo upstream!/);
    assert.match(stdout, /host: hello\.demo\.test/);
    assert.match(stdout, /x-forwarded-proto: https/);

    // The printed admin-API walk-through: bind a domain, then its first request is served.
    const out = demo.output();
    const bind = /^\s*(curl -X PUT .*\/v1\/domains\/blog\.alice\.example)\s*$/m.exec(out)?.[1];
    const visit = /^\s*(curl --cacert \S+ --resolve \S+ https:\/\/blog\.alice\.example:\d+\/)\s*$/m.exec(out)?.[1];
    assert.ok(bind && visit, `demo printed the admin walk-through:\n${out}`);
    assert.match(await sh(`${bind} --silent --show-error --fail --max-time 30`), /"name":\s*"blog\.alice\.example"/);
    assert.match(await sh(`${visit} --silent --show-error --max-time 60`), /host: blog\.alice\.example/);
  } finally {
    await demo.stop('SIGINT');
  }
  assert.equal(demo.child.exitCode, 0, `demo exits cleanly on Ctrl-C:\n${demo.output().slice(-2000)}`);
});
