// The resources one by one against a real Pebble: order, authorization, challenge, finalize,
// download, deactivation (the steps obtain.ts strings together).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { deactivateAuthorization, getAuthorization, respondToChallenge, waitForAuthorization } from '../../../src/acme/plumbing/authorization.ts';
import { downloadCertificate } from '../../../src/acme/plumbing/certificate.ts';
import { jwkThumbprint } from '../../../src/acme/plumbing/jws.ts';
import { finalizeOrder, getOrder, newOrder } from '../../../src/acme/plumbing/order.ts';
import { generateAccountKey } from '../../../src/acme/x509.ts';
import { eventually, newCertRequest, pebbleSuite, verifyChain } from '../../support/acme-responders.ts';

describe('ACME resources against Pebble', () => {
  const suite = pebbleSuite();

  test('low-level steps: order, authorization, challenge, finalize, download', async () => {
    const accountKey = generateAccountKey();
    const client = suite.newAccount({ accountKey });
    const ordersBefore = suite.pebble.ordersPlaced();
    const issuedBefore = suite.pebble.certificatesIssued();
    const order = await newOrder(client, ['steps.certgate.test']);
    const authzUrl = order.authorizations[0]!;
    const authz = await getAuthorization(client, authzUrl);
    assert.equal(authz.status, 'pending');
    assert.equal(authz.identifier.value, 'steps.certgate.test');
    const challenge = authz.challenges.find((c) => c.type === 'http-01')!;
    assert.ok(challenge, 'http-01 offered');
    assert.deepEqual(authz.challenges.map((c) => c.type).sort(), ['dns-01', 'http-01', 'tls-alpn-01']);
    const keyAuth = client.keyAuthorization(challenge.token);
    assert.equal(keyAuth, `${challenge.token}.${jwkThumbprint(accountKey)}`);
    suite.responders.tokens.set(challenge.token, keyAuth);
    try {
      await respondToChallenge(client, challenge.url);
      const valid = await waitForAuthorization(client, authzUrl, { timeoutMs: 10_000 });
      assert.equal(valid.status, 'valid');
    } finally {
      suite.responders.tokens.delete(challenge.token);
    }
    const finalized = await finalizeOrder(client, order, await newCertRequest(['steps.certgate.test']), { timeoutMs: 10_000 });
    assert.equal(finalized.status, 'valid');
    assert.equal(finalized.url, order.url);
    const pem = await downloadCertificate(client, finalized);
    verifyChain(pem, await suite.pebble.rootPem());
    assert.equal((await getOrder(client, order.url)).status, 'valid');

    // an order that is only placed counts as an order, not as a certificate
    const pendingOrder = await newOrder(client, ['never.certgate.test']);
    const deactivated = await deactivateAuthorization(client, pendingOrder.authorizations[0]!);
    assert.equal(deactivated.status, 'deactivated');
    await eventually(() => suite.pebble.ordersPlaced() === ordersBefore + 2, 'order count');
    await eventually(() => suite.pebble.certificatesIssued() === issuedBefore + 1, 'certificate count');
    assert.match(suite.pebble.output(), /Added order/);
  });
});
