// The build operators run (`npm run build`: one esbuild bundle split at every dynamic import, see
// scripts/build.ts) works end to end. Every other e2e test runs the TypeScript sources, so this
// one walks each lazily loaded part of the bundle: the CLI (commander, zod, yaml), cluster
// workers, Redis storage, issuance from Pebble (x509, the ACME client), budgets (tldts), the
// proxy (undici, loaded at run time from node_modules) and the admin API's metrics (prom-client).
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { stringify } from 'yaml';
import { buildBundle } from '../../scripts/build.ts';
import { adminCall } from '../support/admin.ts';
import { httpsGet } from '../support/clients.ts';
import { startPebbleOnFreePorts, type PebbleOnFreePorts } from '../support/pebble.ts';
import { freePort } from '../support/ports.ts';
import { PROJECT_ROOT, runProcess, runToEnd, type RunningProcess } from '../support/process.ts';
import { startRedis, type RedisHandle } from '../support/redis.ts';
import { echoHandler, startUpstream, type FakeUpstream } from '../support/upstream.ts';

const TOKEN = 'build-test-admin-token-0123456789';

describe('the bundle `npm run build` makes', () => {
  let dir: string;
  let entry: string;
  let ca: PebbleOnFreePorts;
  let redis: RedisHandle;
  let upstream: FakeUpstream;
  let proc: RunningProcess;
  let configFile: string;
  let adminPort: number;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'certgate-build-'));
    // Built outside the checkout (a dist/ there would change what bin/certgate.js runs for every
    // other test); node_modules next to it, as in a checkout, for the packages required at run time.
    ({ entry } = await buildBundle(join(dir, 'dist')));
    await symlink(join(PROJECT_ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir');
    [ca, redis, upstream] = await Promise.all([startPebbleOnFreePorts(), startRedis(), startUpstream(echoHandler('app'))]);
    adminPort = await freePort();
    configFile = join(dir, 'certgate.yaml');
    await writeFile(
      configFile,
      stringify({
        workers: 2,
        listen: { https: `127.0.0.1:${ca.httpsPort}`, http: `127.0.0.1:${ca.httpPort}`, admin: `127.0.0.1:${adminPort}` },
        admin: { token: TOKEN },
        storage: { redis: { url: redis.url, prefix: 'cg-build:' } },
        acme: { directory: ca.pebble.directoryUrl, trustedRoots: [ca.pebble.listenerCaPath], budgets: { newOrders: { limit: 300, window: '3h' } } },
        onDemand: { allow: ['*.build.test'] },
        proxy: { upstream: upstream.origin },
      }),
    );
  });

  after(async () => {
    await proc?.stop();
    await upstream?.close();
    await redis?.dispose();
    await ca?.pebble.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('every chunk of the bundle parses (also those no test below loads)', async () => {
    // A chunk that does not parse (the banner every chunk starts with, or anything esbuild emits)
    // fails only when something first imports it, which may be long after start-up.
    const chunks = (await readdir(join(dir, 'dist'))).filter((f) => f.endsWith('.js'));
    assert.ok(chunks.length > 10, `chunks: ${chunks.join(' ')}`);
    for (const chunk of chunks) {
      const { code, output } = await runToEnd(['--check', join(dir, 'dist', chunk)]);
      assert.equal(code, 0, `${chunk}: ${output}`);
    }
  });

  test('validate reads a YAML config and prints the effective one', async () => {
    const { code, output } = await runToEnd([entry, 'validate', '--config', configFile]);
    assert.equal(code, 0, output);
    assert.match(output, /: valid/);
    assert.match(output, /"newOrders"/);
  });

  test('run with workers: 2 on Redis issues at the first request and proxies it', async () => {
    proc = runProcess([entry, 'run', '--config', configFile], { env: { CERTGATE_ADMIN_TOKEN: '' } });
    await proc.waitFor(/certgate listening/, 60_000);
    const res = await httpsGet('first.build.test', ca.httpsPort, ca.root);
    assert.equal(res.status, 200, res.body);
    assert.equal((JSON.parse(res.body) as { name: string }).name, 'app');
    // Served again (by either worker) from the shared store, the same certificate.
    const again = await httpsGet('first.build.test', ca.httpsPort, ca.root);
    assert.equal(again.fingerprint256, res.fingerprint256);
  });

  test('the admin API serves its metrics', async () => {
    const metrics = await adminCall(adminPort, 'GET', '/metrics', { token: TOKEN });
    assert.equal(metrics.status, 200, metrics.body);
    assert.match(metrics.body, /# TYPE certgate_handshakes_total counter/);
    assert.match(metrics.body, /# TYPE certgate_process_cpu_seconds_total counter/);
    assert.doesNotMatch(proc.output(), /worker died|"level":(50|60)/);
  });

  test('the admin API serves the dashboard the build put in dist/ui/ (no esbuild at run time)', async () => {
    // Bundling on demand would look for the sources next to the bundle, which are not there.
    for (const file of ['index.html', 'app.js', 'app.css']) {
      const res = await adminCall(adminPort, 'GET', file === 'index.html' ? '/ui/' : `/ui/${file}`);
      assert.equal(res.status, 200, `${file}: ${res.body.slice(0, 300)}`);
      assert.equal(res.body, await readFile(join(dir, 'dist', 'ui', file), 'utf8'));
    }
  });
});
