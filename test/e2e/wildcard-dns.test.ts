// Issue 15 item 1 acceptance, end to end against a REAL bind9 and Pebble validating against it
// (`-dnsserver` = bind9): the gateway, configured from config only (acme.dns.provider rfc2136
// with a TSIG key bind9 knows, acme.dns.resolvers = bind9), obtains the managed
// `*.wild.test` + `wild.test` by dns-01 with ONE order, serves that one certificate (its chain
// verified against Pebble's root) for a.wild.test, b.wild.test and wild.test; x.y.wild.test is
// not covered (a wildcard covers one label) and gets on-demand logic (no allow: fallback); the
// TXT records are gone from bind9 afterwards; a restart on the same storage places 0 orders; two
// instances on one Redis place one order.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { startBind9, type Bind9Handle } from '../support/bind9.ts';
import { httpsGet, peerCertificate } from '../support/clients.ts';
import { fallbackFingerprint, servedCertificate, startTestGateway, type TestGateway } from '../support/gateway.ts';
import { startPebbleOnFreePorts, type PebbleOnFreePorts } from '../support/pebble.ts';
import { freePort } from '../support/ports.ts';
import { startRedis } from '../support/redis.ts';

const KEY = { name: 'certgate-key', algorithm: 'hmac-sha256', secret: Buffer.alloc(32, 0x3c).toString('base64') } as const;
const NAMES = ['*.wild.test', 'wild.test'];
const SERVED = ['a.wild.test', 'b.wild.test', 'wild.test'];
const CHALLENGE = '_acme-challenge.wild.test';

let dns: Bind9Handle;
let env: PebbleOnFreePorts;

/** The config an operator would write: rfc2136 with the key bind9 knows, propagation asked of bind9. */
function config(): Record<string, unknown> {
  return {
    certificates: [{ names: NAMES }],
    acme: {
      dns: {
        provider: 'rfc2136',
        rfc2136: { server: dns.address, keyName: KEY.name, keyAlgorithm: KEY.algorithm, keySecret: KEY.secret },
        resolvers: [dns.address],
        propagationTimeout: '60s',
      },
    },
  };
}

before(async () => {
  dns = await startBind9({
    zones: [{ name: 'wild.test', a: { 'wild.test': ['127.0.0.1'], '*.wild.test': ['127.0.0.1'] } }],
    keys: [KEY],
  });
  env = await startPebbleOnFreePorts({ dnsServer: dns.address });
});
after(async (t) => {
  if (/exited|refused|denied/i.test(dns?.output() ?? '')) t.diagnostic(dns.output());
  await env?.pebble.stop();
  await dns?.stop();
});

describe('managed wildcard by dns-01 against bind9 and Pebble', () => {
  test('one order, one certificate for a/b.wild.test and wild.test; x.y.wild.test not covered; TXT gone; restart: 0 orders', async () => {
    const { pebble, httpsPort, httpPort, root } = env;
    const orders = pebble.ordersPlaced();
    const gw = await startTestGateway({ pebble, httpsPort, httpPort, config: config() });
    let restarted: TestGateway | undefined;
    try {
      const first = await servedCertificate(gw, httpsPort, 'a.wild.test');
      for (const name of SERVED) {
        // httpsGet verifies the chain the gateway serves against Pebble's root.
        const res = await httpsGet(name, httpsPort, root);
        assert.equal(res.fingerprint256, first.fingerprint256, `${name}: the one managed certificate`);
      }
      const leaf = new X509Certificate((await peerCertificate(httpsPort, 'wild.test')).raw);
      assert.deepEqual(leaf.subjectAltName?.split(', ').sort(), ['DNS:*.wild.test', 'DNS:wild.test']);
      assert.equal(pebble.ordersPlaced(), orders + 1, 'one order for the wildcard and the apex');

      // Two labels below: not covered by *.wild.test; on-demand logic with no allow → fallback, no order.
      const deep = await peerCertificate(httpsPort, 'x.y.wild.test');
      assert.equal(deep.fingerprint256, await fallbackFingerprint(gw));
      assert.equal(pebble.ordersPlaced(), orders + 1);

      assert.deepEqual(await dns.txt(CHALLENGE), [], 'the dns-01 TXT records are removed after the order');
      assert.deepEqual(await gw.storage.inner.list('challenges/dns-01/'), [], 'no trace left for the maintainer to clean');

      await gw.close({ keepData: true });
      restarted = await startTestGateway({ pebble, httpsPort, httpPort, config: config(), dataDir: gw.dataDir });
      const again = await peerCertificate(httpsPort, 'b.wild.test');
      assert.equal(again.fingerprint256, first.fingerprint256, 'loaded from storage at start, served at the first handshake');
      assert.equal(pebble.ordersPlaced(), orders + 1, 'restart with the certificate stored: 0 orders');
    } finally {
      await (restarted ?? gw).close();
      if (restarted) await gw.close().catch(() => undefined);
    }
  });

  test('two instances on one Redis starting together place one order', async (t) => {
    const { pebble, httpsPort, httpPort } = env;
    const redis = await startRedis();
    t.after(() => redis.dispose());
    const orders = pebble.ordersPlaced();
    const shared = { url: redis.url, prefix: 'cg-wild:' };
    const [a, b] = await Promise.all([
      startTestGateway({ pebble, httpsPort, httpPort, config: config(), redis: shared }),
      (async () => {
        const ports = { https: await freePort(), http: await freePort() };
        return startTestGateway({ pebble, httpsPort: ports.https, httpPort: ports.http, config: config(), redis: shared });
      })(),
    ]);
    try {
      const fromA = await servedCertificate(a, httpsPort, 'a.wild.test');
      const fromB = await servedCertificate(b, b.gateway.httpsPort, 'wild.test');
      assert.equal(fromB.fingerprint256, fromA.fingerprint256, 'both instances serve the one certificate');
      assert.equal(pebble.ordersPlaced(), orders + 1, 'one order for the cluster');
      assert.deepEqual(await dns.txt(CHALLENGE), []);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });
});
