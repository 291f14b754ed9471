// Standard Webhooks signing: the spec's reference test vector, and headers the test receiver's
// independent verifier (written from the spec) accepts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { signWebhook, webhookHeaders, webhookKey } from '../../src/webhooks/signature.ts';
import { verifyStandardWebhook } from '../support/webhook-receiver.ts';

// From the Standard Webhooks reference libraries' tests ("sign function works").
const SPEC_SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const SPEC_ID = 'msg_p5jXN8AQM9LWM0D4loKWxJek';
const SPEC_TIMESTAMP = 1614265330;
const SPEC_BODY = '{"test": 2432232314}';
const SPEC_SIGNATURE = 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=';

test('the spec test vector: v1 signature of id.timestamp.body with the base64-decoded whsec_ key', () => {
  assert.equal(webhookKey(SPEC_SECRET).length, 24);
  assert.equal(signWebhook(webhookKey(SPEC_SECRET), SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY), SPEC_SIGNATURE);
});

test('headers: webhook-id, webhook-timestamp in whole seconds, and the signature over both', () => {
  const headers = webhookHeaders(webhookKey(SPEC_SECRET), SPEC_ID, SPEC_BODY, SPEC_TIMESTAMP * 1000 + 999);
  assert.deepEqual(headers, { 'webhook-id': SPEC_ID, 'webhook-timestamp': String(SPEC_TIMESTAMP), 'webhook-signature': SPEC_SIGNATURE });
});

test('a secret without whsec_ is refused with the reason', () => {
  assert.throws(() => webhookKey('MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'), /must start with whsec_/);
});

test('any body and id: the independent verifier accepts what is signed, and not a changed body', () => {
  const key = webhookKey(SPEC_SECRET);
  fc.assert(
    fc.property(fc.string(), fc.stringMatching(/^msg_[0-9a-f]{32}$/), (body, id) => {
      const now = Date.now();
      const headers = webhookHeaders(key, id, body, now);
      assert.ok(verifyStandardWebhook(SPEC_SECRET, headers, body, now));
      assert.ok(!verifyStandardWebhook(SPEC_SECRET, headers, `${body} `, now));
    }),
    { seed: 42, numRuns: 300 },
  );
});
