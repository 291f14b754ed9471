// The transport: Retry-After parsing, and the badNonce retry against a Pebble that rejects 30 %
// of good nonces.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { obtainCertificate } from '../../../src/acme/obtain.ts';
import { AcmeAccount } from '../../../src/acme/plumbing/account.ts';
import { parseRetryAfter } from '../../../src/acme/plumbing/transport.ts';
import { generateAccountKey } from '../../../src/acme/x509.ts';
import { captureLogger, newCertRequest, respondersWithStops, verifyChain } from '../../support/acme-responders.ts';

describe('Retry-After', () => {
  test('Retry-After: seconds and HTTP date', () => {
    assert.equal(parseRetryAfter('3'), 3000);
    assert.equal(parseRetryAfter(undefined), undefined);
    assert.equal(parseRetryAfter('soon'), undefined);
    const now = Date.parse('2030-01-01T00:00:00Z');
    assert.equal(parseRetryAfter('Tue, 01 Jan 2030 00:00:07 GMT', now), 7000);
    assert.equal(parseRetryAfter('Mon, 31 Dec 2029 23:59:00 GMT', now), 0);
  });
});

describe('badNonce', () => {
  const variant = respondersWithStops();
  const { responders, stops } = variant;

  test('badNonce: issuance succeeds with PEBBLE_WFE_NONCEREJECT=30', async () => {
    const pebble = await variant.startPebble({ env: { PEBBLE_WFE_NONCEREJECT: '30' } });
    const { logger, lines } = captureLogger();
    // Six rejections in a row (0.3^6 ≈ 0.07 % per request) would exhaust the default 5 retries;
    // allow more so the test is not flaky. The retry path is the same.
    const account = AcmeAccount.connect({
      directoryUrl: pebble.directoryUrl,
      accountKey: generateAccountKey(),
      trustedRoots: [pebble.listenerCaPem],
      logger,
      badNonceRetries: 12,
    });
    stops.push(() => account.transport.close());
    const retries = (): number => lines().filter((l) => l.msg === 'acme badNonce, retrying').length;
    // Repeat until Pebble rejected at least one nonce (0.7^~40 chance of never seeing one).
    for (let i = 0; i < 4 && (i === 0 || retries() === 0); i++) {
      const domain = `nonce${i}.certgate.test`;
      const result = await obtainCertificate(account, {
        domains: [domain],
        csrDer: await newCertRequest([domain]),
        solvers: [responders.http01()],
      });
      verifyChain(result.certificatePem, await pebble.rootPem());
    }
    assert.ok(retries() > 0, 'Pebble rejected no nonce at all');
    assert.match(pebble.output(), /reject 30% of good nonces/);
  });
});
