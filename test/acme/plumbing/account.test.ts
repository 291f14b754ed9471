// Accounts against a real Pebble: one account per key (found again by a second object, skipped
// when its URL is known), and External Account Binding.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { obtainCertificate } from '../../../src/acme/obtain.ts';
import { AcmeAccount } from '../../../src/acme/plumbing/account.ts';
import { AcmeError, isAcmeError } from '../../../src/acme/plumbing/errors.ts';
import { base64url } from '../../../src/acme/plumbing/jws.ts';
import { newOrder } from '../../../src/acme/plumbing/order.ts';
import { generateAccountKey } from '../../../src/acme/x509.ts';
import { eventually, newCertRequest, pebbleSuite, respondersWithStops, verifyChain } from '../../support/acme-responders.ts';

describe('AcmeAccount against Pebble', () => {
  const suite = pebbleSuite();

  test('a second account object with the same key finds the same account', async () => {
    const accountKey = generateAccountKey();
    const accountsBefore = suite.pebble.accountsCreated();
    const first = suite.newAccount({ accountKey });
    const url = await first.ensure();
    assert.match(url, /^https:\/\/127\.0\.0\.1:\d+\/my-account\//);
    assert.equal(await first.ensure(), url, 'cached');
    const second = suite.newAccount({ accountKey });
    assert.equal(await second.ensure(), url);
    // an account given its URL orders without registering
    const third = suite.newAccount({ accountKey, accountUrl: url });
    const order = await newOrder(third, ['reuse.certgate.test']);
    assert.equal(order.status, 'pending');
    assert.equal(order.authorizations.length, 1);
    assert.deepEqual(order.identifiers, [{ type: 'dns', value: 'reuse.certgate.test' }]);
    await eventually(() => suite.pebble.accountsCreated() === accountsBefore + 1, 'account count');
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(suite.pebble.accountsCreated(), accountsBefore + 1, 'only one account was created');
  });
});

describe('External Account Binding', () => {
  const variant = respondersWithStops();
  const { responders, stops } = variant;

  test('External Account Binding', async () => {
    const hmacKey = 'zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W';
    const pebble = await variant.startPebble({ externalAccountBindingRequired: true, externalAccountMACKeys: { 'kid-1': hmacKey } });
    const base = { directoryUrl: pebble.directoryUrl, trustedRoots: [pebble.listenerCaPem] };
    const without = AcmeAccount.connect({ ...base, accountKey: generateAccountKey() });
    stops.push(() => without.transport.close());
    await assert.rejects(without.ensure(), (e: unknown) => isAcmeError(e, 'externalAccountRequired') && e.step === 'new-account');
    const wrong = AcmeAccount.connect({ ...base, accountKey: generateAccountKey(), eab: { kid: 'kid-1', hmacKey: base64url(Buffer.from('not the key')) } });
    stops.push(() => wrong.transport.close());
    await assert.rejects(wrong.ensure(), (e: unknown) => e instanceof AcmeError && e.step === 'new-account');
    const withEab = AcmeAccount.connect({ ...base, accountKey: generateAccountKey(), eab: { kid: 'kid-1', hmacKey } });
    stops.push(() => withEab.transport.close());
    assert.match(await withEab.ensure(), /\/my-account\//);
    const result = await obtainCertificate(withEab, {
      domains: ['eab.certgate.test'],
      csrDer: await newCertRequest(['eab.certgate.test']),
      solvers: [responders.http01()],
    });
    verifyChain(result.certificatePem, await pebble.rootPem());
  });
});
