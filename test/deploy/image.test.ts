// The container image (Dockerfile) built and started with Debian's podman, where this machine
// allows it:
//   1. podman on PATH and working (`podman info`)
//   2. the base image: CERTGATE_TEST_NODE_IMAGE (an image already in podman's store, for machines
//      without a registry), else node:24-bookworm-slim, pulled if missing
//   3. `podman build --format docker` (the OCI format drops HEALTHCHECK), host network for npm ci,
//      chroot isolation (needs no OCI runtime: crun fails where cgroups are in hybrid mode)
//   4. started on the host network with a config on free loopback ports: the image's own
//      HEALTHCHECK passes, it runs as uid 10001, /readyz answers, SIGTERM stops it. Where the
//      OCI runtime cannot start containers (a sandbox: crun's setrlimit refused), a diagnostic.
// A step this machine cannot take (no podman, no registry to pull the base from) ends the test
// with a diagnostic naming what did not run and why: never silently. The static checks of the
// Dockerfile always run (test/deploy/packaging.test.ts).
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { test, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { freePort } from '../support/ports.ts';
import { PROJECT_ROOT } from '../support/process.ts';

const run = promisify(execFile);
const DEFAULT_BASE = 'docker.io/library/node:24-bookworm-slim';

/** Runs podman; resolves with its exit code and output, never rejects on a non-zero exit. */
async function podman(args: string[], timeoutMs = 60_000): Promise<{ code: number; out: string }> {
  try {
    const { stdout, stderr } = await run('podman', args, { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 });
    return { code: 0, out: `${stdout}${stderr}` };
  } catch (err) {
    const e = err as { code?: number | string; stdout?: string; stderr?: string; message: string };
    return { code: typeof e.code === 'number' ? e.code : -1, out: `${e.stdout ?? ''}${e.stderr ?? ''}${e.message}` };
  }
}

/** Steps 1-2: the base image to build on, or why the image cannot be built here. */
async function baseImage(): Promise<{ image: string } | { reason: string }> {
  if (spawnSync('sh', ['-c', 'command -v podman'], { stdio: 'ignore' }).status !== 0) return { reason: 'podman is not installed (Debian package podman)' };
  const info = await podman(['info']);
  if (info.code !== 0) return { reason: `podman does not work here (podman info: ${info.out.trim().split('\n').at(-1)})` };
  const image = process.env.CERTGATE_TEST_NODE_IMAGE || DEFAULT_BASE;
  if ((await podman(['image', 'exists', image])).code === 0) return { image };
  if (process.env.CERTGATE_TEST_NODE_IMAGE) return { reason: `CERTGATE_TEST_NODE_IMAGE=${image} is not in podman's image store` };
  const pull = await podman(['pull', image], 120_000);
  if (pull.code !== 0) {
    const why = pull.out.split('\n').find((l) => l.startsWith('Error')) ?? pull.out.trim().split('\n').at(-1);
    return { reason: `the base image ${image} cannot be pulled (${why}); set CERTGATE_TEST_NODE_IMAGE to a Node 24 image in podman's store to build on it` };
  }
  return { image };
}

test('the image builds, starts as uid 10001, passes its HEALTHCHECK and stops on SIGTERM', async (t: TestContext) => {
  const base = await baseImage();
  if ('reason' in base) {
    // Not a skip: the lead reads this line in the test output.
    t.diagnostic(`podman build and run did NOT run: ${base.reason}`);
    return;
  }
  t.diagnostic(`podman build and run: building on ${base.image}`);
  const tag = `localhost/certgate-test:${randomBytes(4).toString('hex')}`;
  const dir = await mkdtemp(join(tmpdir(), 'certgate-image-'));
  let container: string | undefined;
  try {
    // 3. build
    const build = await podman(['build', '--isolation', 'chroot', '--format', 'docker', '--network', 'host', '--build-arg', `NODE_IMAGE=${base.image}`, '-t', tag, PROJECT_ROOT], 900_000);
    const offline = /npm error (code|errno) (SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_GET_ISSUER_CERT_LOCALLY|ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ETIMEDOUT)/.exec(build.out);
    if (build.code !== 0 && offline) {
      t.diagnostic(`podman build did NOT complete: npm ci inside the build cannot reach the npm registry from a container here (${offline[2]})`);
      return;
    }
    assert.equal(build.code, 0, `podman build failed:\n${build.out.slice(-4000)}`);
    const inspect = JSON.parse((await podman(['image', 'inspect', tag])).out) as Array<{ Config: { User: string; ExposedPorts: Record<string, unknown>; Healthcheck?: { Test: string[] } } }>;
    assert.equal(inspect[0]!.Config.User, '10001:10001');
    assert.deepEqual(Object.keys(inspect[0]!.Config.ExposedPorts).sort(), ['8080/tcp', '8443/tcp']);
    assert.ok(inspect[0]!.Config.Healthcheck?.Test.join(' ').includes('CERTGATE_HEALTH_URL'));

    // 4. start, on free loopback ports (host network: other tests use the machine at the same time)
    const [https, http, admin] = [await freePort(), await freePort(), await freePort()];
    const config = join(dir, 'certgate.yaml');
    await writeFile(config, stringify({ listen: { https: `127.0.0.1:${https}`, http: `127.0.0.1:${http}`, admin: `127.0.0.1:${admin}` }, workers: 1, storage: { file: { path: '/var/lib/certgate' } } }));
    await chmod(config, 0o644);
    await chmod(dir, 0o755);
    const started = await podman(['run', '-d', '--network', 'host', '-v', `${config}:/etc/certgate/certgate.yaml:ro`, '-e', `CERTGATE_HEALTH_URL=http://127.0.0.1:${admin}/healthz`, tag]);
    if (started.code !== 0 && /OCI|crun|runc/.test(started.out)) {
      t.diagnostic(`podman built the image, but podman run did NOT run: the OCI runtime cannot start containers here (${started.out.trim().split('\n').at(-1)})`);
      return;
    }
    assert.equal(started.code, 0, started.out);
    container = started.out.trim().split('\n').at(-1)!;
    // The image's own HEALTHCHECK command, run by podman inside the container, until it passes.
    let health = { code: -1, out: '' };
    for (let i = 0; i < 120 && health.code !== 0; i++) {
      health = await podman(['healthcheck', 'run', container]);
      if (health.code !== 0) await sleep(500);
    }
    const logs = async () => (await podman(['logs', container!])).out;
    assert.equal(health.code, 0, `healthcheck never passed: ${health.out}\n${await logs()}`);
    assert.equal((await podman(['exec', container, 'id', '-u'])).out.trim(), '10001');
    const ready = await fetch(`http://127.0.0.1:${admin}/readyz`);
    assert.equal(ready.status, 200, await ready.text());
    const stop = await podman(['stop', '--time', '30', container], 60_000);
    assert.equal(stop.code, 0, stop.out);
    const state = JSON.parse((await podman(['inspect', container])).out) as Array<{ State: { ExitCode: number } }>;
    assert.equal(state[0]!.State.ExitCode, 0, `exit code after SIGTERM:\n${await logs()}`);
  } finally {
    if (container) await podman(['rm', '-f', container]);
    await podman(['rmi', '-f', tag]);
    await rm(dir, { recursive: true, force: true });
  }
});
