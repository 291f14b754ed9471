// The exec provider with a small shell hook: arguments arrive as argv (no shell between, so a
// value with shell syntax stays one argument), a failing hook's exit code and stderr are in the
// error, and a hook that hangs is killed at the bound.
import assert from 'node:assert/strict';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { ExecProvider } from '../../../src/acme/dns/exec.ts';
import { tmpDir } from '../../support/tmp.ts';
import { providerFailure as failure } from '../../support/dns.ts';

const BOUND_MS = 1000;
/** "Within the bound" on a slow, loaded machine: the bound plus a wide margin. */
const WITHIN_MS = BOUND_MS + 20_000;

/** A hook: `<hook> <mode> <action> <fqdn> <value>`; mode ok | fail | hang. */
const HOOK = `#!/bin/sh
mode="$1"; shift
case "$mode" in
  ok) printf '%s|%s|%s\\n' "$1" "$2" "$3" >> "$(dirname "$0")/calls.log" ;;
  fail) echo "zone $2 not managed here: $(printf 'x%.0s' $(seq 1 2000))" >&2; exit 3 ;;
  hang) exec sleep 600 ;;
esac
`;

async function hook(t: Parameters<typeof tmpDir>[0]): Promise<{ path: string; log: string }> {
  const dir = await tmpDir(t, 'certgate-exec-');
  const path = join(dir, 'dns-hook');
  await writeFile(path, HOOK);
  await chmod(path, 0o755);
  return { path, log: join(dir, 'calls.log') };
}


test('exec: runs <command...> present|cleanup <fqdn> <value> without a shell', async (t) => {
  const { path, log } = await hook(t);
  const p = new ExecProvider({ command: [path, 'ok'] }, { timeoutMs: BOUND_MS * 10 });
  await p.present('_acme-challenge.a.test', 'v1');
  await p.cleanup('_acme-challenge.a.test', '$(echo injected); `echo x` "q"');
  assert.equal(await readFile(log, 'utf8'), 'present|_acme-challenge.a.test|v1\ncleanup|_acme-challenge.a.test|$(echo injected); `echo x` "q"\n');
});

test('exec: a non-zero exit fails naming the step, the exit code and the (cut) stderr', async (t) => {
  const { path } = await hook(t);
  const { err } = await failure(() => new ExecProvider({ command: [path, 'fail'] }).present('_acme-challenge.b.test', 'v'));
  assert.equal(err.step, 'present');
  assert.equal(err.provider, 'exec');
  assert.match(err.message, /_acme-challenge\.b\.test/);
  assert.match(err.message, /exited with 3; stderr: zone _acme-challenge\.b\.test not managed here/);
  assert.ok(err.message.length < 1000, `message not cut: ${err.message.length} characters`);
});

test('exec: a hook that hangs is killed at the bound; a missing program fails at once', async (t) => {
  const { path } = await hook(t);
  const hung = await failure(() => new ExecProvider({ command: [path, 'hang'] }, { timeoutMs: BOUND_MS }).cleanup('_acme-challenge.c.test', 'v'));
  assert.equal(hung.err.step, 'cleanup');
  assert.match(hung.err.message, new RegExp(`did not finish within ${BOUND_MS} ms`));
  assert.ok(hung.ms < WITHIN_MS, `took ${hung.ms} ms`);
  const missing = await failure(() => new ExecProvider({ command: ['/nonexistent/dns-hook'] }).present('_acme-challenge.c.test', 'v'));
  assert.match(missing.err.message, /could not run: .*ENOENT/);
});
