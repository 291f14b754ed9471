// Issue 15 item 4 acceptance (DCV delegation), against a real bind9 and Pebble validating through
// it (recursion on for 127.0.0.1, so the answer to `_acme-challenge.<name>` carries the TXT at the
// CNAME's target). The customer's zone `cust.test` points its names elsewhere (192.0.2.1) and
// delegates `_acme-challenge.shop.cust.test` and `_acme-challenge.cust.test` by CNAME into the
// platform's delegation zone `dcv.platform.test`, where the gateway may write TXT (TSIG).
//   - a bound name with the CNAME: `dcv.ready: true`, POST .../issue → 1 order by dns-01, and an
//     SNI handshake gets that certificate (the A record never pointed here)
//   - a bound name without it: `dcv.ready: false`, issue → 422 naming the CNAME, 0 orders
//   - `*.cust.test` bound and issued → served for `x.cust.test`, not `x.y.cust.test`
//   - the challenge TXT records are gone afterwards
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { adminCall } from '../support/admin.ts';
import { startBind9, type Bind9Handle } from '../support/bind9.ts';
import { peerCertificate } from '../support/clients.ts';
import { fallbackFingerprint, startTestGateway, type TestGateway } from '../support/gateway.ts';
import { startPebbleOnFreePorts, type PebbleOnFreePorts } from '../support/pebble.ts';

const SECRET = Buffer.alloc(32, 0x2a).toString('base64');
const ELSEWHERE = '192.0.2.1';
const ZONE = 'dcv.platform.test';

let dns: Bind9Handle;
let env: PebbleOnFreePorts;
let gw: TestGateway;
let admin: number;
const call = (method: string, path: string, body?: unknown) => adminCall(admin, method, path, body === undefined ? {} : { body });

before(async () => {
  dns = await startBind9({
    zones: [
      {
        name: 'cust.test',
        a: { 'cust.test': [ELSEWHERE], 'shop.cust.test': [ELSEWHERE], 'nocname.cust.test': [ELSEWHERE], '*.cust.test': [ELSEWHERE] },
        cname: { '_acme-challenge.shop.cust.test': `shop.cust.test.${ZONE}`, '_acme-challenge.cust.test': `cust.test.${ZONE}` },
      },
    ],
    keys: [{ name: 'certgate-key', algorithm: 'hmac-sha256', secret: SECRET }],
    delegationZone: ZONE,
    recursion: true,
  });
  env = await startPebbleOnFreePorts({ dnsServer: dns.address });
  gw = await startTestGateway({
    pebble: env.pebble,
    httpsPort: env.httpsPort,
    httpPort: env.httpPort,
    config: {
      onDemand: { registry: true },
      acme: {
        dns: {
          provider: 'rfc2136',
          rfc2136: { server: dns.address, keyName: 'certgate-key', keyAlgorithm: 'hmac-sha256', keySecret: SECRET },
          resolvers: [dns.address],
          propagationTimeout: '60s',
          delegation: { zone: ZONE },
        },
      },
    },
  });
  admin = gw.gateway.adminPort!;
});

after(async (t) => {
  await gw?.close();
  await env?.pebble.stop();
  if (/exited/.test(dns?.output() ?? '')) t.diagnostic(dns.output());
  await dns?.stop();
});

/** The SANs of the leaf `port` serves for `name`. */
async function servedNames(name: string): Promise<{ fingerprint: string; sans: string }> {
  const cert = await peerCertificate(env.httpsPort, name);
  return { fingerprint: cert.fingerprint256, sans: cert.subjectaltname ?? '' };
}

describe('DCV delegation end to end (bind9 + Pebble)', () => {
  test('a bound name whose A points elsewhere, CNAME in place: dcv ready, pre-issued by dns-01 (1 order), served at the first handshake', async () => {
    assert.equal((await call('PUT', '/v1/domains/shop.cust.test', {})).status, 201);
    const shown = await call('GET', '/v1/domains/shop.cust.test');
    assert.equal(shown.status, 200);
    assert.deepEqual((shown.json as { dcv: unknown }).dcv, { name: '_acme-challenge.shop.cust.test', type: 'CNAME', target: `shop.cust.test.${ZONE}`, ready: true });

    const orders = env.pebble.ordersPlaced();
    const issued = await call('POST', '/v1/domains/shop.cust.test/issue');
    assert.equal(issued.status, 200, issued.body);
    assert.equal(env.pebble.ordersPlaced(), orders + 1, 'one order');

    // Traffic arrives: the handshake gets the real certificate, no further order.
    const served = await servedNames('shop.cust.test');
    assert.notEqual(served.fingerprint, await fallbackFingerprint(gw));
    assert.match(served.sans, /DNS:shop\.cust\.test/);
    assert.equal(env.pebble.ordersPlaced(), orders + 1);
    assert.deepEqual(await dns.txt(`shop.cust.test.${ZONE}`), [], 'the challenge TXT is removed afterwards');
  });

  test('a bound name with neither the CNAME nor its A pointing here: dcv.ready false, issue names the records, 0 orders', async () => {
    assert.equal((await call('PUT', '/v1/domains/nocname.cust.test', {})).status, 201);
    const shown = await call('GET', '/v1/domains/nocname.cust.test');
    assert.deepEqual((shown.json as { dcv: unknown }).dcv, { name: '_acme-challenge.nocname.cust.test', type: 'CNAME', target: `nocname.cust.test.${ZONE}`, ready: false });

    const orders = env.pebble.ordersPlaced();
    const refused = await call('POST', '/v1/domains/nocname.cust.test/issue');
    assert.equal(refused.status, 422, refused.body);
    const body = refused.json as { error: string; records: Array<{ name: string; type: string; target: string }> };
    assert.match(body.error, /_acme-challenge\.nocname\.cust\.test CNAME nocname\.cust\.test\.dcv\.platform\.test/);
    assert.deepEqual(body.records[0], { name: '_acme-challenge.nocname.cust.test', type: 'CNAME', target: `nocname.cust.test.${ZONE}` });
    assert.equal(env.pebble.ordersPlaced(), orders, 'no order');
  });

  test('a bound *.cust.test is issued through the delegation and served for x.cust.test, not x.y.cust.test', async () => {
    assert.equal((await call('PUT', `/v1/domains/${encodeURIComponent('*.cust.test')}`, {})).status, 201);
    const shown = await call('GET', '/v1/domains/*.cust.test');
    assert.deepEqual((shown.json as { dcv: unknown }).dcv, { name: '_acme-challenge.cust.test', type: 'CNAME', target: `cust.test.${ZONE}`, ready: true });
    const orders = env.pebble.ordersPlaced();
    const issued = await call('POST', '/v1/domains/*.cust.test/issue');
    assert.equal(issued.status, 200, issued.body);
    assert.equal(env.pebble.ordersPlaced(), orders + 1);

    const x = await servedNames('x.cust.test');
    assert.match(x.sans, /DNS:\*\.cust\.test/);
    const deeper = await servedNames('x.y.cust.test');
    assert.equal(deeper.fingerprint, await fallbackFingerprint(gw), 'a wildcard covers one label only');
    assert.equal(env.pebble.ordersPlaced(), orders + 1, 'no on-demand order for the names below it');
    assert.deepEqual(await dns.txt(`cust.test.${ZONE}`), []);
  });
});
