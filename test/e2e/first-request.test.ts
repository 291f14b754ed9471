// Issue 2 acceptance, against a real Pebble: the first HTTPS request to a new allowed name
// gets a certificate during its handshake and reaches the upstream; the second is answered
// from memory; http-01 and tls-alpn-01 each work alone; 50 concurrent first handshakes share
// one issuance; a restart serves the stored certificate and reuses the account.
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { keys } from '../../src/storage/keys.ts';
import { curlGet, httpsGet, peerCertificate } from '../support/clients.ts';
import { startTestGateway } from '../support/gateway.ts';
import { echoHandler, startUpstream, type FakeUpstream } from '../support/upstream.ts';
import { startPebbleOnFreePorts, type PebbleHandle } from '../support/pebble.ts';

interface Env {
  pebble: PebbleHandle;
  httpsPort: number;
  httpPort: number;
  root: string;
  upstream: FakeUpstream;
}

async function setUp(): Promise<Env> {
  const { pebble, httpsPort, httpPort, root } = await startPebbleOnFreePorts();
  return { pebble, httpsPort, httpPort, root, upstream: await startUpstream(echoHandler('app')) };
}

async function tearDown(env: Env | undefined): Promise<void> {
  await env?.upstream.close();
  await env?.pebble.stop();
}

async function storedMeta(dataDir: string, pebble: PebbleHandle, domain: string): Promise<{ challenge: string; fingerprint256: string }> {
  const { caIdFromDirectory } = await import('../../src/storage/keys.ts');
  return JSON.parse(await readFile(join(dataDir, keys.certificateMeta(caIdFromDirectory(pebble.directoryUrl), domain)), 'utf8'));
}

describe('first request to a new domain (http-01 and tls-alpn-01)', () => {
  let env: Env;
  before(async () => {
    env = await setUp();
  });
  after(() => tearDown(env));

  test('issues during the handshake, proxies, then serves from memory; restart reuses storage and account', async () => {
    const { pebble, root, upstream } = env;
    const gw = await startTestGateway({
      pebble,
      httpsPort: env.httpsPort,
      httpPort: env.httpPort,
      config: { onDemand: { allow: ['*.customers.test'] }, proxy: { upstream: upstream.origin } },
    });
    let closed = false;
    try {
      const domain = 'blog.customers.test';
      const orders0 = pebble.ordersPlaced();

      const first = await httpsGet(domain, env.httpsPort, root);
      assert.equal(first.status, 200);
      const body = JSON.parse(first.body);
      assert.equal(body.name, 'app');
      assert.equal(body.headers.host, domain);
      assert.equal(pebble.ordersPlaced(), orders0 + 1, 'one order for the first request');
      assert.equal(pebble.certificatesIssued(), 1);
      assert.deepEqual(gw.outcomes.map((o) => o.outcome), ['issued']);

      // Second request: served from memory — no storage read, no CA call.
      const readsBefore = gw.storage.counts.get;
      const second = await httpsGet(domain, env.httpsPort, root);
      assert.equal(second.status, 200);
      assert.equal(second.fingerprint256, first.fingerprint256);
      assert.equal(gw.storage.counts.get, readsBefore, 'no storage read for a cached certificate');
      assert.equal(pebble.ordersPlaced(), orders0 + 1, 'no new order');
      assert.equal(gw.outcomes.at(-1)?.outcome, 'cache-hit');

      // curl, verifying against Pebble's root, agrees.
      const rootFile = join(gw.dataDir, 'pebble-root.pem');
      await writeFile(rootFile, root);
      const viaCurl = await curlGet(domain, env.httpsPort, rootFile);
      assert.equal(viaCurl.status, 200);
      assert.equal(JSON.parse(viaCurl.body).name, 'app');

      // Storage layout and key protection.
      const { caIdFromDirectory } = await import('../../src/storage/keys.ts');
      const ca = caIdFromDirectory(pebble.directoryUrl);
      const { stat } = await import('node:fs/promises');
      assert.equal((await stat(join(gw.dataDir, keys.certificateKey(ca, domain)))).mode & 0o777, 0o600);
      assert.equal((await stat(join(gw.dataDir, keys.accountKey(ca, undefined)))).mode & 0o777, 0o600);
      const accountBefore = await readFile(join(gw.dataDir, keys.account(ca, undefined)), 'utf8');

      // Restart on the same storage: same certificate, zero new orders, same account.
      await gw.close({ keepData: true });
      closed = true;
      const again = await startTestGateway({
        pebble,
        httpsPort: env.httpsPort,
        httpPort: env.httpPort,
        dataDir: gw.dataDir,
        config: { onDemand: { allow: ['*.customers.test'] }, proxy: { upstream: upstream.origin } },
      });
      try {
        const afterRestart = await httpsGet(domain, env.httpsPort, root);
        assert.equal(afterRestart.status, 200);
        assert.equal(afterRestart.fingerprint256, first.fingerprint256, 'the stored certificate is served again');
        assert.equal(pebble.ordersPlaced(), orders0 + 1, 'zero new orders after restart');
        assert.deepEqual(again.outcomes.map((o) => o.outcome), ['storage']);

        // A new name after the restart uses the stored account, not a new one.
        const accountsBefore = pebble.accountsCreated();
        const other = await httpsGet('shop.customers.test', env.httpsPort, root);
        assert.equal(other.status, 200);
        assert.equal(pebble.accountsCreated(), accountsBefore, 'no new ACME account');
        assert.equal(await readFile(join(gw.dataDir, keys.account(ca, undefined)), 'utf8'), accountBefore);
      } finally {
        await again.close();
      }
    } finally {
      if (!closed) await gw.close();
    }
  });

  test('50 concurrent first handshakes for one new name: one certificate, 50 successes', async () => {
    const { pebble, root, upstream } = env;
    const gw = await startTestGateway({
      pebble,
      httpsPort: env.httpsPort,
      httpPort: env.httpPort,
      config: { onDemand: { allow: ['*.customers.test'] }, proxy: { upstream: upstream.origin } },
    });
    try {
      const issued0 = pebble.certificatesIssued();
      const orders0 = pebble.ordersPlaced();
      const results = await Promise.allSettled(Array.from({ length: 50 }, () => httpsGet('burst.customers.test', env.httpsPort, root)));
      const failures = results.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason));
      assert.deepEqual(failures, [], 'every request succeeds');
      const fingerprints = new Set(results.map((r) => (r as PromiseFulfilledResult<{ fingerprint256: string }>).value.fingerprint256));
      assert.equal(fingerprints.size, 1, 'all 50 got the same certificate');
      assert.equal(pebble.certificatesIssued(), issued0 + 1, 'exactly one certificate issued');
      assert.equal(pebble.ordersPlaced(), orders0 + 1, 'exactly one order');
    } finally {
      await gw.close();
    }
  });
});

for (const challenge of ['http-01', 'tls-alpn-01'] as const) {
  describe(`${challenge} only`, () => {
    let env: Env;
    before(async () => {
      env = await setUp();
    });
    after(() => tearDown(env));

    // http-01 also covers acme.keyType rsa-2048; tls-alpn-01 the ECDSA P-256 default.
    const keyType = challenge === 'http-01' ? 'rsa-2048' : 'ecdsa-p256';
    test(`a certificate is obtained with ${challenge} alone (${keyType} key)`, async () => {
      const { pebble, root, upstream } = env;
      const gw = await startTestGateway({
        pebble,
        httpsPort: env.httpsPort,
        httpPort: env.httpPort,
        config: { acme: { challenges: [challenge], ...(keyType === 'rsa-2048' ? { keyType } : {}) }, onDemand: { allow: ['only.example.com'] }, proxy: { upstream: upstream.origin } },
      });
      try {
        const res = await httpsGet('only.example.com', env.httpsPort, root);
        assert.equal(res.status, 200);
        assert.equal(JSON.parse(res.body).name, 'app');
        const meta = await storedMeta(gw.dataDir, pebble, 'only.example.com');
        assert.equal(meta.challenge, challenge);
        assert.equal(meta.fingerprint256, res.fingerprint256);
        const served = await peerCertificate(env.httpsPort, 'only.example.com');
        if (keyType === 'rsa-2048') assert.equal(served.bits, 2048, 'an RSA 2048 key');
        else assert.equal(served.asn1Curve, 'prime256v1', 'an ECDSA P-256 key');
        // The validation really went to the listener of this challenge type.
        const validations = gw.outcomes.filter((o) => o.outcome === 'challenge').length;
        if (challenge === 'tls-alpn-01') assert.ok(validations >= 1, 'Pebble validated over tls-alpn-01');
        else assert.equal(validations, 0, 'no tls-alpn-01 handshakes when only http-01 is enabled');
      } finally {
        await gw.close();
      }
    });
  });
}
