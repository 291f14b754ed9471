// Issue 5 acceptance: two maintainers (separate processes, `role: maintainer`) on one Redis:
// exactly one (the leader) renews; SIGKILL it and the other takes over within the lock expiry
// and renews. An in-process `role: edge` gateway on Pebble's validation ports serves traffic and
// answers the validations from Redis, and never renews. Pebble issues 40-second certificates,
// so renewals (at half-life) come round every ~20 s without waiting for real expiry.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createClient } from 'redis';
import { stringify } from 'yaml';
import { keys } from '../../src/storage/keys.ts';
import { peerCertificate } from '../support/clients.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { startPebbleOnFreePorts, type PebbleHandle } from '../support/pebble.ts';
import { freePort } from '../support/ports.ts';
import { CERTGATE_BIN, runProcess, type RunningProcess } from '../support/process.ts';
import { startRedis, type RedisHandle } from '../support/redis.ts';

const LOCK_TTL_MS = 3000;
const prefix = 'cg-leader:';
const names = ['a.leader.test', 'b.leader.test', 'c.leader.test'];

let dir: string;
let redis: RedisHandle;
let pebble: PebbleHandle;
let edge: TestGateway;
const maintainers: Array<{ name: string; proc: RunningProcess }> = [];

async function startMaintainer(name: string): Promise<{ name: string; proc: RunningProcess }> {
  const file = join(dir, `${name}.yaml`);
  await writeFile(
    file,
    stringify({
      role: 'maintainer',
      workers: 1,
      listen: { https: `127.0.0.1:${await freePort()}`, http: `127.0.0.1:${await freePort()}` },
      storage: { redis: { url: redis.url, prefix } },
      acme: { directory: pebble.directoryUrl, trustedRoots: [pebble.listenerCaPath], lockTtl: '3s' },
      onDemand: { allow: ['*.leader.test'] },
      renewal: { checkInterval: '300ms', leaderLockTtl: LOCK_TTL_MS, jitter: '1s' },
    }),
  );
  const proc = runProcess([CERTGATE_BIN, 'run', '--config', file]);
  await proc.waitFor(/gateway listening/, 30_000);
  const m = { name, proc };
  maintainers.push(m);
  return m;
}

function logLines(proc: RunningProcess, step: string): Array<Record<string, unknown>> {
  return proc
    .output()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.step === step);
}

async function until(what: string, cond: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${maintainers.map((m) => `--- ${m.name}\n${m.proc.output().slice(-3000)}`).join('\n')}`);
    await sleep(100);
  }
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'certgate-leader-'));
  redis = await startRedis();
  let httpsPort: number;
  let httpPort: number;
  ({ pebble, httpsPort, httpPort } = await startPebbleOnFreePorts({ certificateValidityPeriod: 40 }));
  edge = await startTestGateway({ pebble, httpsPort, httpPort, redis: { url: redis.url, prefix }, config: { role: 'edge', onDemand: { allow: ['*.leader.test'] } } });
});

after(async () => {
  await Promise.all(maintainers.map((m) => m.proc.stop('SIGKILL')));
  await edge?.close();
  await pebble?.stop();
  await redis?.dispose();
  await rm(dir, { recursive: true, force: true });
});

test('two maintainers on one Redis: exactly one renews; SIGKILL it and the other takes over within the lock expiry', async () => {
  assert.equal(edge.gateway.maintainer, undefined, 'an edge runs no maintainer');
  for (const name of names) {
    const cert = await peerCertificate(edge.gateway.httpsPort, name);
    assert.ok(String(cert.subjectaltname).includes(`DNS:${name}`), `${name} issued through the edge`);
  }
  const issuedAtStart = pebble.certificatesIssued();
  assert.equal(issuedAtStart, names.length);

  const [m1, m2] = await Promise.all([startMaintainer('m1'), startMaintainer('m2')]);
  await until('a leader', () => logLines(m1.proc, 'leader-elected').length + logLines(m2.proc, 'leader-elected').length > 0, 15_000);
  const leader = logLines(m1.proc, 'leader-elected').length > 0 ? m1 : m2;
  const other = leader === m1 ? m2 : m1;

  // Certificates are due at half-life (20 s): wait until the leader has renewed each once.
  await until('the leader to renew every name', () => new Set(logLines(leader.proc, 'renewed').map((l) => l.domain)).size === names.length, 60_000);
  assert.equal(logLines(other.proc, 'leader-elected').length, 0, 'only one leader');
  assert.equal(logLines(other.proc, 'renewal-start').length, 0, 'the other maintainer renewed nothing');
  const leaderRenewals = logLines(leader.proc, 'renewed').length;
  assert.equal(pebble.certificatesIssued(), issuedAtStart + leaderRenewals, 'one certificate per renewal, no duplicates');
  // The edge keeps serving the renewed certificates (from Redis; its cache follows via pub/sub).
  for (const name of names) assert.ok(String((await peerCertificate(edge.gateway.httpsPort, name)).subjectaltname).includes(`DNS:${name}`));

  await leader.proc.stop('SIGKILL');
  // The dead leader's lease runs out LOCK_TTL_MS after its last refresh, as Redis keeps it.
  const lockKey = `${prefix}locks/${keys.maintainerLock}.lock`;
  const raw = createClient({ url: redis.url });
  await raw.connect();
  let leaseEndsAt: number;
  try {
    // PTTL counts from when Redis ran it, after `before`: the lease ends no earlier than
    // before + pttl, however slowly the answer comes back on a loaded machine.
    const before = Date.now();
    const [holder, pttl] = await Promise.all([raw.get(lockKey), raw.pTTL(lockKey)]);
    leaseEndsAt = before + Math.max(pttl, 0);
    assert.equal((JSON.parse(holder ?? '{}') as { pid?: number }).pid, logLines(leader.proc, 'leader-elected')[0]!.pid, 'the lock was the dead leader’s');
  } finally {
    await raw.close();
  }
  // The other maintainer tries every TTL/3, so it takes over about a lease after the kill: not
  // before the lease ran out (by its own log line's time), and well within 10 lock lifetimes (a
  // lock nobody can take over would never be).
  await until('the other maintainer to take over', () => logLines(other.proc, 'leader-elected').length > 0, 10 * LOCK_TTL_MS);
  const tookOverAt = Date.parse(String(logLines(other.proc, 'leader-elected')[0]!.time));
  assert.ok(tookOverAt >= leaseEndsAt - 2, `took over ${leaseEndsAt - tookOverAt} ms before the dead leader’s lease ran out`);

  // And it renews: every name again, within a lifetime.
  const before = pebble.certificatesIssued();
  await until('the new leader to renew every name', () => new Set(logLines(other.proc, 'renewed').map((l) => l.domain)).size === names.length, 60_000);
  assert.ok(pebble.certificatesIssued() >= before + names.length);
  assert.equal(edge.outcomes.filter((o) => o.outcome === 'error').length, 0);
});
