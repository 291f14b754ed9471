// Issue 19, item 4: the access log hands its lines to stdout in batches (up to 64 KiB or 100 ms);
// a graceful stop (SIGTERM) right after the last response still writes every line, each valid
// JSON, one per request. certgate runs as an operator runs it (bin/certgate.js, one process).
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { Agent, request } from 'node:https';
import { join } from 'node:path';
import { test } from 'node:test';
import { freePort } from '../support/ports.ts';
import { CERTGATE_BIN, runProcess } from '../support/process.ts';
import { tmpDir } from '../support/tmp.ts';
import { echoHandler, startUpstream } from '../support/upstream.ts';

const REQUESTS = 400;
const CONNECTIONS = 8;

function get(port: number, agent: Agent, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, servername: 'localhost', rejectUnauthorized: false, agent }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.setTimeout(30_000, () => req.destroy(new Error(`timeout for ${path}`)));
    req.on('error', reject);
    req.end();
  });
}

test(`a graceful stop right after ${REQUESTS} keep-alive requests: ${REQUESTS} access lines, all valid JSON`, async (t) => {
  const dir = await tmpDir(t, 'certgate-accesslog-e2e-');
  const upstream = await startUpstream(echoHandler('app'));
  t.after(() => upstream.close());
  const httpsPort = await freePort();
  let httpPort = await freePort();
  while (httpPort === httpsPort) httpPort = await freePort();
  const config = join(dir, 'certgate.json');
  await writeFile(
    config,
    JSON.stringify({
      workers: 1,
      listen: { https: `127.0.0.1:${httpsPort}`, http: `127.0.0.1:${httpPort}`, admin: false },
      storage: { file: { path: join(dir, 'data') } },
      acme: { directory: 'https://127.0.0.1:9/dir' },
      onDemand: { allow: ['*.never.test'] },
      // `localhost` is no valid on-demand name: the fallback certificate serves it.
      tls: { denied: 'fallback' },
      proxy: { upstream: upstream.origin, accessLog: true },
    }),
  );
  const gw = runProcess([CERTGATE_BIN, 'run', '--config', config]);
  t.after(() => gw.stop('SIGKILL'));
  await gw.waitFor(/certgate listening/, 60_000);

  const agent = new Agent({ keepAlive: true, maxSockets: CONNECTIONS });
  t.after(() => agent.destroy());
  let next = 0;
  const statuses: number[] = [];
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      while (next < REQUESTS) statuses.push(await get(httpsPort, agent, `/r/${next++}`));
    }),
  );
  assert.equal(statuses.filter((s) => s === 200).length, REQUESTS);
  // At once: the last batch (under 64 KiB) is not due for up to 100 ms.
  const exited = new Promise<number | null>((resolve) => gw.child.once('exit', (code) => resolve(code)));
  gw.child.kill('SIGTERM');
  assert.equal(await exited, 0);
  await new Promise((resolve) => setImmediate(resolve)); // stdout drained

  const lines = gw
    .output()
    .split('\n')
    .filter((l) => l.includes('"msg":"access"'));
  const paths = lines.map((l) => (JSON.parse(l) as { path: string; status: number; component: string }).path);
  assert.equal(paths.length, REQUESTS, `${paths.length} access lines for ${REQUESTS} requests`);
  assert.deepEqual(new Set(paths), new Set(Array.from({ length: REQUESTS }, (_, i) => `/r/${i}`)));
});
