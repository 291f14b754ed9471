// Issue 15 item 3 acceptance, against real Pebble (http-01/tls-alpn-01), file storage and
// redis-server: `certificates: [{ names: [m1, m2] }]` is obtained at start with ONE order (one
// certificate for both names), served for both SNIs without the policy being asked (no allow
// covers them); a restart places 0 orders; two instances on one Redis place one order; a name not
// covered still gets on-demand logic.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { peerCertificate } from '../support/clients.ts';
import { fallbackFingerprint, servedCertificate as managedCertificate, startTestGateway, type TestGateway } from '../support/gateway.ts';
import { startPebbleOnFreePorts, type PebbleHandle } from '../support/pebble.ts';
import { freePort } from '../support/ports.ts';
import { startRedis, type RedisHandle } from '../support/redis.ts';

const NAMES = ['m1.managed.test', 'm2.managed.test'];
const config = {
  certificates: [{ names: NAMES }],
  onDemand: { allow: ['*.ondemand.test'] },
};

/** Counts the policy's decisions from now on (the managed path must never ask). */
function countPolicy(gw: TestGateway): string[] {
  const asked: string[] = [];
  const policy = gw.gateway.policy;
  const decide = policy.decide.bind(policy);
  policy.decide = (domain: string) => {
    asked.push(domain);
    return decide(domain);
  };
  return asked;
}

describe('managed certificates', () => {
  let pebble: PebbleHandle;
  let httpsPort: number;
  let httpPort: number;

  before(async () => {
    ({ pebble, httpsPort, httpPort } = await startPebbleOnFreePorts());
  });

  after(async () => {
    await pebble?.stop();
  });

  test('obtained at start with one order, served for every name without policy; restart: 0 orders; other names on demand', async () => {
    const orders = pebble.ordersPlaced();
    const gw = await startTestGateway({ pebble, httpsPort, httpPort, config });
    let restarted: TestGateway | undefined;
    try {
      const asked = countPolicy(gw);
      const m1 = await managedCertificate(gw, httpsPort, NAMES[0]!);
      const m2 = await peerCertificate(httpsPort, NAMES[1]!);
      assert.equal(m2.fingerprint256, m1.fingerprint256, 'one certificate for both names');
      assert.match(m1.subjectaltname ?? '', /DNS:m1\.managed\.test/);
      assert.match(m1.subjectaltname ?? '', /DNS:m2\.managed\.test/);
      assert.equal(pebble.ordersPlaced(), orders + 1, 'one order for both names');
      assert.deepEqual(asked, [], 'the policy is never asked for a managed name');

      // Not covered: on-demand logic as before (the policy is asked; allowed → issued).
      const other = await peerCertificate(httpsPort, 'x.ondemand.test');
      assert.notEqual(other.fingerprint256, await fallbackFingerprint(gw));
      assert.deepEqual(asked, ['x.ondemand.test']);
      assert.equal(pebble.ordersPlaced(), orders + 2);

      await gw.close({ keepData: true });
      restarted = await startTestGateway({ pebble, httpsPort, httpPort, config, dataDir: gw.dataDir });
      const again = await peerCertificate(httpsPort, NAMES[1]!);
      assert.equal(again.fingerprint256, m1.fingerprint256, 'loaded from storage at start, served at the first handshake');
      assert.equal(pebble.ordersPlaced(), orders + 2, 'restart with the certificate stored: 0 orders');
    } finally {
      await (restarted ?? gw).close();
      if (restarted) await gw.close().catch(() => undefined);
    }
  });

  test('two instances on one Redis starting together place one order', async (t) => {
    const redis: RedisHandle = await startRedis();
    t.after(() => redis.dispose());
    const orders = pebble.ordersPlaced();
    const shared = { url: redis.url, prefix: 'cg-managed:' };
    // Pebble validates against the first instance's ports; the other answers from shared storage.
    const [a, b] = await Promise.all([
      startTestGateway({ pebble, httpsPort, httpPort, config, redis: shared }),
      (async () => {
        const ports = { https: await freePort(), http: await freePort() };
        return startTestGateway({ pebble, httpsPort: ports.https, httpPort: ports.http, config, redis: shared });
      })(),
    ]);
    try {
      const fromA = await managedCertificate(a, httpsPort, NAMES[0]!);
      const fromB = await managedCertificate(b, b.gateway.httpsPort, NAMES[1]!);
      assert.equal(fromB.fingerprint256, fromA.fingerprint256, 'both instances serve the one certificate');
      assert.equal(pebble.ordersPlaced(), orders + 1, 'one order for the cluster');
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });
});
