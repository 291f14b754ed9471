// Issue 19 (c): `workers: 1` is one process, no primary, and it runs with the young-generation
// cap the workers get (src/cluster/young-generation.ts restartWithYoungGenerationCap): the process started
// is the one that serves (same PID, replaced in place), its command line carries the flag, and it
// has no Node child processes.
import assert from 'node:assert/strict';
import { readFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { freePort } from '../support/ports.ts';
import { plainGet } from '../support/clients.ts';
import { CERTGATE_BIN, runProcess, type RunningProcess } from '../support/process.ts';

const procs: RunningProcess[] = [];
const dirs: string[] = [];
after(async () => {
  for (const p of procs) await p.stop();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function start(env: Record<string, string> = {}): Promise<{ proc: RunningProcess; httpPort: number }> {
  const dir = await mkdtemp(join(tmpdir(), 'certgate-single-'));
  dirs.push(dir);
  const [https, http] = [await freePort(), await freePort()];
  const file = join(dir, 'certgate.json');
  await writeFile(file, JSON.stringify({ workers: 1, listen: { https: `127.0.0.1:${https}`, http: `127.0.0.1:${http}`, admin: false }, storage: { file: { path: join(dir, 'data') } }, onDemand: { allow: ['*.single.test'] } }));
  const proc = runProcess([CERTGATE_BIN, 'run', '--config', file], { env });
  procs.push(proc);
  await proc.waitFor(/certgate listening/, 60_000);
  return { proc, httpPort: http };
}

const cmdline = async (pid: number): Promise<string[]> => (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').filter(Boolean);
/** Node processes among `pid`'s children (tsx, when running from the sources, has an esbuild child). */
async function nodeChildren(pid: number): Promise<string[]> {
  const ids = (await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8')).trim().split(/\s+/).filter(Boolean).map(Number);
  const lines = await Promise.all(ids.map(async (id) => (await cmdline(id)).join(' ')));
  return lines.filter((line) => line.startsWith(process.execPath));
}

test('workers: 1 serves from the process started, with the young-generation cap and no children', async () => {
  const { proc, httpPort } = await start();
  const pid = proc.child.pid!;
  assert.ok((await cmdline(pid)).includes('--max-semi-space-size=16'), `cmdline: ${(await cmdline(pid)).join(' ')}`);
  assert.deepEqual(await nodeChildren(pid), [], 'no primary, no workers');
  const res = await plainGet(httpPort, '/', { headers: { host: 'www.single.test' } });
  assert.ok(res.status > 0, 'the HTTP listener answers');
});

test('workers: 1 keeps an operator-chosen young-generation size (no restart)', async () => {
  const { proc } = await start({ NODE_OPTIONS: '--max-semi-space-size=8' });
  const args = await cmdline(proc.child.pid!);
  assert.ok(!args.includes('--max-semi-space-size=16'), `cmdline: ${args.join(' ')}`);
});
