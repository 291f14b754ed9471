// Issue 13 acceptance (names): `*.` approves exactly one label below its suffix, `**.` any depth;
// SNI that is not ASCII (node reads raw UTF-8 SNI bytes as latin1) and invalid `xn--` labels get
// the fallback certificate with no order at the CA; valid IDN A-labels still get a certificate.
// Real Pebble; openssl s_client sends the SNI bytes node's own client would refuse.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { httpsGet, opensslFingerprint } from '../support/clients.ts';
import { fallbackFingerprint as fallbackOf, startTestGateway, type TestGateway } from '../support/gateway.ts';
import { startPebbleOnFreePorts, type PebbleHandle } from '../support/pebble.ts';
import { echoHandler, startUpstream, type FakeUpstream } from '../support/upstream.ts';

describe('names: one-label and any-depth wildcards, IDN checks, at the handshake', () => {
  let pebble: PebbleHandle;
  let upstream: FakeUpstream;
  let httpsPort: number;
  let httpPort: number;
  let root: string;
  let gw: TestGateway | undefined;
  let fallback: string;

  before(async () => {
    ({ pebble, httpsPort, httpPort, root } = await startPebbleOnFreePorts());
    upstream = await startUpstream(echoHandler('app'));
  });

  after(async () => {
    await gw?.close();
    await upstream?.close();
    await pebble?.stop();
  });

  /** A gateway approving `allow`, on the ports Pebble validates against (one at a time). */
  async function gatewayAllowing(allow: string[]): Promise<void> {
    await gw?.close();
    gw = await startTestGateway({ pebble, httpsPort, httpPort, config: { onDemand: { allow }, proxy: { upstream: upstream.origin } } });
    fallback = await fallbackOf(gw);
  }

  async function assertCertificate(name: string): Promise<void> {
    const orders = pebble.ordersPlaced();
    const res = await httpsGet(name, httpsPort, root);
    assert.equal(res.status, 200, name);
    assert.notEqual(res.fingerprint256, fallback, `${name} gets a real certificate`);
    assert.equal(pebble.ordersPlaced(), orders + 1, `one order for ${name}`);
  }

  async function assertFallback(sni: string, what: string): Promise<void> {
    const orders = pebble.ordersPlaced();
    assert.equal(await opensslFingerprint(httpsPort, sni), fallback, `${what}: fallback certificate`);
    assert.equal(pebble.ordersPlaced(), orders, `${what}: no order at the CA`);
  }

  test('*.allowed.test approves a.allowed.test, not a.b.allowed.test', async () => {
    await gatewayAllowing(['*.allowed.test']);
    await assertCertificate('a.allowed.test');
    await assertFallback('a.b.allowed.test', 'two labels below *.allowed.test');
    await assertFallback('allowed.test', 'the suffix itself');
  });

  test('raw UTF-8 SNI gets the fallback, no policy decision, no order', async () => {
    // Before the fix, node's latin1 reading ('bÃ¼cher') became an xn-- name *.allowed.test approved.
    for (const sni of ['bücher.allowed.test', 'ÿ.allowed.test', 'café.allowed.test']) {
      const before = gw!.outcomes.length;
      await assertFallback(sni, `UTF-8 SNI ${sni}`);
      assert.deepEqual(gw!.outcomes.slice(before), [{ outcome: 'fallback', domain: undefined }], `${sni} is refused at the name check, before any policy call`);
    }
  });

  test('invalid xn-- labels get the fallback, no order', async () => {
    for (const sni of ['xn--a.allowed.test', 'xn--abc-.allowed.test', 'xn--a-ecp.allowed.test', 'XN--BCHER-KVA-.allowed.test']) {
      const before = gw!.outcomes.length;
      await assertFallback(sni, `invalid A-label ${sni}`);
      assert.deepEqual(gw!.outcomes.slice(before), [{ outcome: 'fallback', domain: undefined }], sni);
    }
  });

  test('a valid IDN A-label still gets its certificate', async () => {
    await assertCertificate('xn--bcher-kva.allowed.test');
  });

  test('**.allowed.test approves both a.allowed.test and a.b.allowed.test', async () => {
    await gatewayAllowing(['**.allowed.test']);
    await assertCertificate('c.allowed.test');
    await assertCertificate('a.b.allowed.test');
    await assertFallback('allowed.test', 'the suffix itself');
  });
});
