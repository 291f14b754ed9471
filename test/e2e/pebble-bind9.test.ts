// Pebble validating against a real bind9 the test starts (`startPebble({ dnsServer })`, issue 15's
// test support for dns-01): Pebble resolves the names it validates through bind9, so a name with
// an A record there is issued (http-01/tls-alpn-01 to the gateway on 127.0.0.1), and
// pebble-challtestsrv is not started.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { httpsGet } from '../support/clients.ts';
import { startBind9, type Bind9Handle } from '../support/bind9.ts';
import { startTestGateway } from '../support/gateway.ts';
import { startPebbleOnFreePorts, type PebbleOnFreePorts } from '../support/pebble.ts';

let dns: Bind9Handle;
let env: PebbleOnFreePorts;
before(async () => {
  dns = await startBind9({ zones: [{ name: 'served.test', a: { 'blog.served.test': ['127.0.0.1'] } }] });
  env = await startPebbleOnFreePorts({ dnsServer: dns.address });
});
after(async () => {
  await env?.pebble.stop();
  await dns?.stop();
});

test('Pebble resolves through bind9: a name with an A record there is issued; challtestsrv is not started', async () => {
  const { pebble, root, httpsPort, httpPort } = env;
  assert.equal(pebble.challtestsrvUrl, '');
  assert.equal(pebble.dnsAddress, dns.address);
  const gw = await startTestGateway({ pebble, httpsPort, httpPort, config: { onDemand: { allow: ['*.served.test'] } } });
  try {
    const res = await httpsGet('blog.served.test', httpsPort, root);
    assert.ok(res.status > 0);
    assert.equal(pebble.certificatesIssued(), 1);
  } finally {
    await gw.close();
  }
});
