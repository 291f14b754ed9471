// Gateway.reload (issue 16 item 5): the live keys of a re-read config apply to a running
// gateway, part by part; keys that need a restart are reported and left as they run.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { startGateway, type Gateway } from '../../src/gateway/index.ts';
import { parseConfig } from '../../src/config/load.ts';
import { capturingLogger } from '../support/log-lines.ts';
import { insecureGet } from '../support/admin.ts';
import { freePort } from '../support/ports.ts';
import { startUpstream, type FakeUpstream } from '../support/upstream.ts';
import { startWebhookReceiver } from '../support/webhook-receiver.ts';

let gateway: Gateway;
let oldApp: FakeUpstream;
let newApp: FakeUpstream;
let raw: (changes: { upstream: string; allow?: string[]; perClient?: unknown; level?: string; concurrency?: number; webhooks?: unknown[] }) => unknown;
let dir: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'certgate-reload-unit-'));
  oldApp = await startUpstream((_req, res) => res.end('old'));
  newApp = await startUpstream((_req, res) => res.end('new'));
  const ports = { https: await freePort(), http: await freePort() };
  raw = (c) => ({
    listen: { https: `127.0.0.1:${ports.https}`, http: `127.0.0.1:${ports.http}`, admin: false },
    storage: { file: { path: dir } },
    acme: { directory: 'https://127.0.0.1:9/dir' },
    onDemand: { allow: c.allow ?? ['old.reload.test'], limits: { perClient: c.perClient ?? { rate: 5, burst: 100 } } },
    proxy: { routes: [{ hosts: ['app.reload.test'], upstream: c.upstream }], accessLog: false },
    log: { level: c.level ?? 'info' },
    // app.reload.test has no certificate: served over the fallback (the default `alert` refuses it).
    tls: { denied: 'fallback' },
    renewal: { concurrency: c.concurrency ?? 4 },
    ...(c.webhooks ? { webhooks: c.webhooks } : {}),
  });
  gateway = await startGateway(parseConfig(raw({ upstream: oldApp.origin }), { baseDir: dir }), { logger: capturingLogger('info').logger, admin: false });
});

after(async () => {
  await gateway?.close();
  await oldApp?.close();
  await newApp?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('routes, allow, limit rates and log level apply; a restart-only key is reported, not applied', async () => {
  assert.equal((await insecureGet('app.reload.test', gateway.httpsPort)).body, 'old');
  assert.equal((await gateway.policy.decide('new.reload.test')).allowed, false);
  const changes = gateway.reload(
    parseConfig(raw({ upstream: newApp.origin, allow: ['new.reload.test'], perClient: { rate: 0.001, burst: 1 }, level: 'debug', concurrency: 9 }), { baseDir: dir }),
  );
  assert.deepEqual(changes, { live: ['log.level', 'onDemand.allow', 'onDemand.limits.perClient', 'proxy.routes'], restart: ['renewal.concurrency'] });
  assert.equal((await insecureGet('app.reload.test', gateway.httpsPort)).body, 'new');
  assert.equal((await gateway.policy.decide('new.reload.test')).allowed, true);
  assert.equal((await gateway.policy.decide('old.reload.test')).allowed, false);
  // burst 1: the second issuance-starting handshake from one client is refused.
  assert.equal(gateway.limits.admit('a.reload.test', '192.0.2.1').ok, true);
  assert.equal(gateway.limits.admit('b.reload.test', '192.0.2.1').ok, false);
  assert.equal(gateway.logger.level, process.env.CERTGATE_LOG_LEVEL || 'debug');
});

test('a second reload compares against what runs: the restart-only key is still reported, nothing live again', () => {
  const changes = gateway.reload(
    parseConfig(raw({ upstream: newApp.origin, allow: ['new.reload.test'], perClient: { rate: 0.001, burst: 1 }, level: 'debug', concurrency: 9 }), { baseDir: dir }),
  );
  assert.deepEqual(changes, { live: [], restart: ['renewal.concurrency'] });
});

test('webhooks apply: an endpoint added by a reload gets the next event, signed with its secret', async () => {
  const secret = `whsec_${Buffer.alloc(32, 7).toString('base64')}`;
  const receiver = await startWebhookReceiver(secret);
  try {
    const base = { upstream: newApp.origin, allow: ['new.reload.test'], perClient: { rate: 0.001, burst: 1 }, level: 'debug', concurrency: 9 };
    const changes = gateway.reload(parseConfig(raw({ ...base, webhooks: [{ url: receiver.url, secret, retry: { delays: ['200ms'] } }] }), { baseDir: dir }));
    assert.deepEqual(changes.live, ['webhooks']);
    await gateway.registry.put('hooked.reload.test', { enabled: true });
    const [hook] = await receiver.waitFor((r) => r.some((w) => w.payload.type === 'domain-bound'), 30_000, 'domain-bound after the reload');
    assert.equal(hook!.verified, true);
    assert.equal(hook!.payload.data.domain ?? hook!.payload.data.name, 'hooked.reload.test');
  } finally {
    await receiver.close();
  }
});
