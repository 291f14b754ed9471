// GET /v1/certificates/{name} reports a name's failures from the certificate manager's retry
// state in storage: two instances on one storage, and an instance started afresh, give the same
// attempts, last error (with the step that failed) and next retry. The ACME directory is
// unreachable, so every issuance fails at its first step; no CA is needed.
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { parseConfig } from '../../src/config/load.ts';
import type { CertificateEvent } from '../../src/issuance/events.ts';
import { silentLogger } from '../../src/util/log.ts';
import { startGateway, type Gateway } from '../../src/gateway/index.ts';
import { adminCall } from '../support/admin.ts';
import { freePort } from '../support/ports.ts';
import { tmpDir } from '../support/tmp.ts';

const TOKEN = 'status-test-token-0123456789';

interface FailureHistory {
  attempts: number;
  lastError: { at: string; step: string | null; error: string } | null;
  nextRetryAt: string | null;
  givenUp: boolean;
}

describe('admin certificate status: failures from the shared retry state', () => {
  const cleanups: Array<() => Promise<unknown>> = [];
  const gateways: Gateway[] = [];
  let dataDir: string;
  let deadDirectory: string;

  async function startInstance(): Promise<Gateway> {
    const config = parseConfig(
      {
        listen: { https: `127.0.0.1:${await freePort()}`, http: `127.0.0.1:${await freePort()}`, admin: '127.0.0.1:0' },
        storage: { file: { path: dataDir } },
        // A short first backoff so the test can fail the name twice.
        acme: { directory: deadDirectory, retry: { delays: ['1s'], then: '1s' } },
        onDemand: { allow: ['*.status.test'] },
        admin: { token: TOKEN },
        log: { level: 'silent' },
      },
      { baseDir: dataDir },
    );
    const gateway = await startGateway(config, { logger: silentLogger() });
    gateways.push(gateway);
    return gateway;
  }
  const status = async (gateway: Gateway, name: string) => {
    const res = await adminCall(gateway.adminPort!, 'GET', `/v1/certificates/${name}`, { token: TOKEN });
    assert.equal(res.status, 404, res.body);
    return res.json as FailureHistory & { error: string };
  };
  /** Fails the name through this instance's API; resolves with the issuance-failed event. */
  const failIssue = async (gateway: Gateway, name: string) => {
    let failed: Extract<CertificateEvent, { type: 'issuance-failed' }> | undefined;
    const stop = gateway.events.on((e) => {
      if (e.type === 'issuance-failed' && e.domain === name) failed = e;
    });
    try {
      const res = await adminCall(gateway.adminPort!, 'POST', `/v1/domains/${name}/issue`, { token: TOKEN });
      assert.equal(res.status, 502, res.body);
    } finally {
      stop();
    }
    assert.ok(failed, 'an issuance-failed event');
    return failed;
  };

  before(async () => {
    dataDir = await tmpDir({ after: (fn) => void cleanups.push(fn as () => Promise<unknown>) }, 'certgate-status-');
    deadDirectory = `https://127.0.0.1:${await freePort()}/dir`; // nothing listens here
  });
  after(async () => {
    for (const gateway of gateways) await gateway.close().catch(() => undefined);
    for (const cleanup of cleanups) await cleanup();
  });

  test('two instances and a restarted one report the same attempts, last error and next retry', async () => {
    const name = 'down.status.test';
    const a = await startInstance();
    const b = await startInstance();
    const none = await status(a, name);
    assert.deepEqual({ ...none, error: undefined }, { error: undefined, attempts: 0, lastError: null, nextRetryAt: null, givenUp: false });

    const first = await failIssue(a, name);
    const afterFirst = await status(b, name);
    assert.equal(afterFirst.attempts, 1, 'instance B sees the failure instance A recorded');
    assert.equal(afterFirst.lastError?.step, first.step);
    assert.equal(afterFirst.lastError?.error, first.error);
    assert.equal(afterFirst.givenUp, false);
    const backoffMs = Date.parse(afterFirst.nextRetryAt!) - Date.parse(afterFirst.lastError!.at);
    assert.ok(backoffMs >= 1000 && backoffMs < 2000, `next retry one backoff (1 s) after the failure, got ${backoffMs} ms`);

    // Past the backoff, B fails it again: both instances count two.
    await sleep(Date.parse(afterFirst.nextRetryAt!) - Date.now() + 100);
    const second = await failIssue(b, name);
    for (const gateway of [a, b]) {
      const s = await status(gateway, name);
      assert.equal(s.attempts, 2);
      assert.equal(s.lastError?.step, second.step);
      assert.ok(Date.parse(s.lastError!.at) >= Date.parse(afterFirst.lastError!.at));
    }

    // An instance started afresh on the same storage knows it too.
    await a.close();
    await b.close();
    gateways.length = 0;
    const restarted = await startInstance();
    const again = await status(restarted, name);
    assert.equal(again.attempts, 2);
    assert.equal(again.lastError?.step, second.step);
    assert.match(again.error, /no certificate for down\.status\.test/);
  });
});
