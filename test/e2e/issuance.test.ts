// Issue 5 acceptance (part B), against real Pebble and its challtestsrv DNS:
// - pre-flight: a name whose DNS does not point at us gets the fallback and zero orders;
// - issuer fallback: the first issuer is down, the second issues, meta.json records which;
// - budgets: with N new orders per window, N+5 new names give N orders and 5 fallbacks, and
//   the log names the budget; one client address spends at most onDemand.limits.budgetShare of
//   it, so another client's new name is still issued.
import assert from 'node:assert/strict';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connect as netConnect } from 'node:net';
import { connect } from 'node:tls';
import { caIdFromDirectory, keys } from '../../src/storage/keys.ts';
import { httpsGet, peerCertificate } from '../support/clients.ts';
import { fallbackFingerprint, startTestGateway } from '../support/gateway.ts';
import { capturingLogger } from '../support/log-lines.ts';
import { startPebbleOnFreePorts, type MockDns, type PebbleHandle } from '../support/pebble.ts';
import { freePort } from '../support/ports.ts';
import { echoHandler, startUpstream, type FakeUpstream } from '../support/upstream.ts';

describe('issuance: pre-flight, issuer fallback, budgets', () => {
  let pebble: PebbleHandle;
  let dns: MockDns;
  let upstream: FakeUpstream;
  let httpsPort: number;
  let httpPort: number;
  let root: string;

  before(async () => {
    ({ pebble, dns, httpsPort, httpPort, root } = await startPebbleOnFreePorts());
    upstream = await startUpstream(echoHandler('app'));
  });

  after(async () => {
    await upstream?.close();
    await pebble?.stop();
  });

  test('pre-flight: a name that does not point at us gets the fallback and no order; one that does is issued', async () => {
    const { logger, lines } = capturingLogger();
    const gw = await startTestGateway({
      pebble,
      httpsPort,
      httpPort,
      logger,
      config: {
        onDemand: { allow: ['*.preflight.test'], preflight: { resolvers: [pebble.dnsAddress], httpPort, timeout: '2s' } },
        proxy: { upstream: upstream.origin },
      },
    });
    try {
      // 127.0.0.2 is loopback too, but nothing listens there on the gateway's HTTP port.
      await dns.setA('elsewhere.preflight.test', ['127.0.0.2']);
      const orders = pebble.ordersPlaced();
      const cert = await peerCertificate(httpsPort, 'elsewhere.preflight.test');
      assert.equal(cert.fingerprint256, await fallbackFingerprint(gw));
      assert.equal(pebble.ordersPlaced(), orders, 'zero orders for a name that does not point at us');
      const refusal = lines.find((l) => l.step === 'preflight' && l.domain === 'elsewhere.preflight.test' && l.ok === false);
      assert.ok(refusal, 'the log says why');
      assert.match(String(refusal.reason), /127\.0\.0\.2/);

      // The default answer (127.0.0.1) reaches this gateway: the probe passes and a certificate is issued.
      const res = await httpsGet('here.preflight.test', httpsPort, root);
      assert.equal(res.status, 200);
      assert.equal(pebble.ordersPlaced(), orders + 1);
      assert.ok(lines.some((l) => l.step === 'preflight' && l.domain === 'here.preflight.test' && l.ok === true));
    } finally {
      await gw.close();
    }
  });

  test('pre-flight: the probe token is answered by any instance on the same storage', async () => {
    // Instance B shares A's storage; A's probe goes to B's HTTP port, as a load balancer might send it.
    const a0 = await startTestGateway({ pebble, httpsPort, httpPort, config: { onDemand: { allow: ['*.cluster.test'] } } });
    const dataDir = a0.dataDir;
    const b = await startTestGateway({ pebble, httpsPort: await freePort(), httpPort: await freePort(), dataDir, config: { onDemand: { allow: ['*.cluster.test'] } } });
    await a0.close({ keepData: true });
    const { logger, lines } = capturingLogger();
    const a = await startTestGateway({
      pebble,
      httpsPort,
      httpPort,
      dataDir,
      logger,
      config: { onDemand: { allow: ['*.cluster.test'], preflight: { resolvers: [pebble.dnsAddress], httpPort: b.gateway.httpPort } } },
    });
    try {
      const orders = pebble.ordersPlaced();
      const res = await httpsGet('shared.cluster.test', httpsPort, root);
      assert.notEqual(res.fingerprint256, await fallbackFingerprint(a));
      assert.equal(pebble.ordersPlaced(), orders + 1);
      assert.ok(lines.some((l) => l.step === 'preflight' && l.domain === 'shared.cluster.test' && l.ok === true));
    } finally {
      await a.close({ keepData: true });
      await b.close();
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  test('issuer fallback: first issuer down, the second issues; meta.json records the issuer', async () => {
    const deadDirectory = `https://127.0.0.1:${await freePort()}/dir`; // nothing listens here
    const { logger, lines } = capturingLogger();
    const gw = await startTestGateway({
      pebble,
      httpsPort,
      httpPort,
      logger,
      config: {
        onDemand: { allow: ['*.fallback.test'] },
        acme: { directory: undefined, issuers: [{ directory: deadDirectory }, { directory: pebble.directoryUrl }] },
        proxy: { upstream: upstream.origin },
      },
    });
    try {
      const orders = pebble.ordersPlaced();
      const res = await httpsGet('shop.fallback.test', httpsPort, root);
      assert.equal(res.status, 200);
      assert.notEqual(res.fingerprint256, await fallbackFingerprint(gw));
      assert.equal(pebble.ordersPlaced(), orders + 1);

      const pebbleCa = caIdFromDirectory(pebble.directoryUrl);
      const meta = JSON.parse(await readFile(join(gw.dataDir, keys.certificateMeta(pebbleCa, 'shop.fallback.test')), 'utf8')) as { ca: string; directory: string };
      assert.equal(meta.ca, pebbleCa);
      assert.equal(meta.directory, pebble.directoryUrl);
      assert.ok(lines.some((l) => l.step === 'directory' && l.ca === caIdFromDirectory(deadDirectory) && l.msg === 'issuer failed; trying the next one'));

      // A restarted gateway with the same issuers finds it under the second issuer's CA directory.
      await gw.close({ keepData: true });
      const again = await startTestGateway({
        pebble,
        httpsPort,
        httpPort,
        dataDir: gw.dataDir,
        config: { onDemand: { allow: ['*.fallback.test'] }, acme: { directory: undefined, issuers: [{ directory: deadDirectory }, { directory: pebble.directoryUrl }] } },
      });
      try {
        assert.equal((await peerCertificate(httpsPort, 'shop.fallback.test')).fingerprint256, res.fingerprint256);
        assert.equal(pebble.ordersPlaced(), orders + 1, 'loaded, not ordered again');
      } finally {
        await again.close();
      }
    } finally {
      await gw.close().catch(() => undefined);
    }
  });

  test('budget of N new orders per window: N+5 new names give N orders, 5 fallbacks, and a log line naming the budget', async () => {
    const N = 3;
    const { logger, lines } = capturingLogger();
    const gw = await startTestGateway({
      pebble,
      httpsPort,
      httpPort,
      logger,
      config: {
        // Every handshake here comes from one client: no per-client share, the whole budget is the test's.
        onDemand: { allow: ['*.budget.test'], limits: { budgetShare: 1 } },
        acme: { budgets: { newOrders: { limit: N, window: '1h' } } },
        proxy: { upstream: upstream.origin },
      },
    });
    try {
      const fallback = await fallbackFingerprint(gw);
      const orders = pebble.ordersPlaced();
      const names = Array.from({ length: N + 5 }, (_, i) => `n${i}.budget.test`);
      const served: string[] = [];
      for (const name of names) served.push((await peerCertificate(httpsPort, name)).fingerprint256);
      assert.equal(pebble.ordersPlaced() - orders, N, 'exactly N orders reached the CA');
      assert.equal(served.filter((f) => f === fallback).length, 5, 'the other 5 names got the fallback');
      const budgetLines = lines.filter((l) => l.step === 'budget' && l.budget === 'newOrders');
      assert.equal(budgetLines.length, 5);
      assert.match(String(budgetLines[0]!.msg), /rate-limit budget newOrders spent .* no order until \d{4}-/);
      assert.ok(typeof budgetLines[0]!.freesAt === 'string');
      const left = await gw.gateway.budgets.remaining('newOrders', gw.gateway.issuer.ca, 'any.budget.test');
      assert.equal(left.remaining, 0);
      // A spent budget is not the name's fault: no backoff recorded for it.
      assert.equal(await gw.gateway.manager.backoff(names[N + 4]!), null);
    } finally {
      await gw.close();
    }
  });

  test('budget share per client: client A\'s flood of allowed names spends at most its share; client B\'s new name still gets its certificate', async () => {
    const N = 8;
    const SHARE = 0.25; // of 8: two orders per client address
    const { logger, lines } = capturingLogger();
    const gw = await startTestGateway({
      pebble,
      httpsPort,
      httpPort,
      logger,
      config: {
        onDemand: { allow: ['*.share.test'], limits: { budgetShare: SHARE } },
        acme: { budgets: { newOrders: { limit: N, window: '1h' } } },
        proxy: { upstream: upstream.origin },
      },
    });
    try {
      const fallback = await fallbackFingerprint(gw);
      const orders = pebble.ordersPlaced();
      // Client A (127.0.0.1): as many random allowed names as the whole budget.
      const servedA: string[] = [];
      for (let i = 0; i < N; i++) servedA.push((await peerCertificate(httpsPort, `a${i}.share.test`)).fingerprint256);
      const ordersA = pebble.ordersPlaced() - orders;
      assert.equal(ordersA, N * SHARE, 'A placed exactly its share of orders');
      assert.equal(servedA.filter((f) => f === fallback).length, N - N * SHARE, 'then A got the fallback');
      const shareLines = lines.filter((l) => l.step === 'budget' && l.client === '127.0.0.1');
      assert.ok(shareLines.length >= 1);
      assert.match(String(shareLines[0]!.msg), /client 127\.0\.0\.1 spent its share/);

      // Client B, another source address on the loopback range: its new customer's name is issued.
      const root = await pebble.rootPem();
      const b = await verifiedHandshakeFrom('127.0.0.2', httpsPort, 'customer-b.share.test', root);
      assert.equal(b.authorized, true, `B got a certificate that verifies: ${b.error ?? ''}`);
      assert.notEqual(b.fingerprint256, fallback);
      assert.equal(pebble.ordersPlaced() - orders, N * SHARE + 1, 'one order for B');
      const left = await gw.gateway.budgets.remaining('newOrders', gw.gateway.issuer.ca, 'any.share.test');
      assert.equal(left.remaining, N - N * SHARE - 1, 'A\'s refused names did not count against the CA budget');
    } finally {
      await gw.close();
    }
  });
});

/** A TLS handshake from `localAddress` (another loopback address = another client), verified against `ca`. */
function verifiedHandshakeFrom(localAddress: string, port: number, servername: string, ca: string): Promise<{ authorized: boolean; error?: string; fingerprint256: string }> {
  return new Promise((resolve, reject) => {
    const tcp = netConnect({ host: '127.0.0.1', port, localAddress });
    const socket = connect({ socket: tcp, servername, ca, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] }, () => {
      const result = { authorized: socket.authorized, fingerprint256: socket.getPeerCertificate().fingerprint256, ...(socket.authorizationError ? { error: String(socket.authorizationError) } : {}) };
      socket.end();
      resolve(result);
    });
    socket.setTimeout(60_000, () => socket.destroy(new Error(`handshake timeout for ${servername} from ${localAddress}`)));
    socket.on('error', reject);
  });
}
