// Issue 2 acceptance: two gateway processes on the same file storage directory, a name
// requested through both at once, is issued once: the file lock works across processes, and
// whichever process Pebble validates against answers the challenge from shared storage.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { stringify } from 'yaml';
import { httpsGet } from '../support/clients.ts';
import { echoHandler, startUpstream, type FakeUpstream } from '../support/upstream.ts';
import { startPebble, type PebbleHandle } from '../support/pebble.ts';
import { freePort } from '../support/ports.ts';
import { CERTGATE_BIN, runProcess, type RunningProcess } from '../support/process.ts';

let pebble: PebbleHandle;
let dir: string;
let upstream: FakeUpstream;
const procs: RunningProcess[] = [];
const ports: Array<{ https: number; http: number }> = [];

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'certgate-mp-'));
  for (let i = 0; i < 2; i++) ports.push({ https: await freePort(), http: await freePort() });
  // Pebble validates against process A's ports only; B must never be the one asked.
  pebble = await startPebble({ httpPort: ports[0]!.http, tlsPort: ports[0]!.https });
  upstream = await startUpstream(echoHandler('app'));
  for (const [i, p] of ports.entries()) {
    const file = join(dir, `gateway-${i}.yaml`);
    await writeFile(
      file,
      stringify({
        listen: { https: `127.0.0.1:${p.https}`, http: `127.0.0.1:${p.http}` },
        storage: { file: { path: join(dir, 'data') } },
        acme: { directory: pebble.directoryUrl, trustedRoots: [pebble.listenerCaPath] },
        onDemand: { allow: ['*.shared.test'] },
        proxy: { upstream: upstream.origin },
      }),
    );
    const proc = runProcess([CERTGATE_BIN, 'run', '--config', file]);
    procs.push(proc);
  }
  await Promise.all(procs.map((p) => p.waitFor(/certgate listening/)));
});

after(async () => {
  await Promise.all(procs.map((p) => p.stop()));
  await upstream?.close();
  await pebble?.stop();
  await rm(dir, { recursive: true, force: true });
});

for (const name of ['one.shared.test', 'two.shared.test', 'three.shared.test']) {
  test(`${name} requested through both processes at once is issued once`, async () => {
    const root = await pebble.rootPem();
    const issued = pebble.certificatesIssued();
    // Several requests per process, all at once, so both race for the lock.
    const requests = ports.flatMap((p) => Array.from({ length: 3 }, () => httpsGet(name, p.https, root)));
    const results = await Promise.all(requests);
    for (const r of results) assert.equal(r.status, 200);
    assert.equal(new Set(results.map((r) => r.fingerprint256)).size, 1, 'both processes serve the same certificate');
    assert.equal(pebble.certificatesIssued(), issued + 1, `exactly one certificate for ${name}\n${procs.map((p) => p.output()).join('\n')}`);
  });
}

test('both processes took part: each issued or loaded from storage', () => {
  const out = procs.map((p) => p.output());
  assert.ok(out.every((o) => o.includes('"step":"listen"')));
  // Across three names, the process that did not win the lock loaded the result from storage.
  assert.equal(out.join('\n').match(/"step":"issued"/g)?.length, 3, 'three issuances in total');
});
