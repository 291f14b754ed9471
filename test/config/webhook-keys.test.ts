// The `webhooks` config section: secrets in the Standard Webhooks format, events from the one
// vocabulary, the spec's example retry schedule by default, one entry per URL.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parse, problems } from '../support/config.ts';

const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';

test('defaults: every event, retries after 5s, 5m, 30m, 2h, 5h, 10h, 10h', () => {
  const [hook] = parse({ webhooks: [{ url: 'https://panel.example/hooks', secret: SECRET }] }).webhooks;
  assert.deepEqual(hook!.events, ['domain-bound', 'domain-unbound', 'issuance-succeeded', 'issuance-failed', 'renewed', 'deleted', 'certificate-expiring']);
  const h = 3_600_000;
  assert.deepEqual(hook!.retry.delays, [5000, 300_000, 1_800_000, 2 * h, 5 * h, 10 * h, 10 * h]);
  assert.deepEqual(parse({}).webhooks, []);
});

test('retry.delays are durations', () => {
  const [hook] = parse({ webhooks: [{ url: 'http://127.0.0.1:9/h', secret: SECRET, events: ['renewed'], retry: { delays: ['200ms', 1000] } }] }).webhooks;
  assert.deepEqual(hook!.retry.delays, [200, 1000]);
  assert.match(problems({ webhooks: [{ url: 'http://127.0.0.1:9/h', secret: SECRET, retry: { delays: ['soon'] } }] }), /webhooks\[0\]\.retry\.delays\[0\].*not a duration/);
});

test('secrets: whsec_ and the base64 of 24 to 64 bytes, else a message saying how to make one', () => {
  for (const secret of ['MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'whsec_c2hvcnQ=', 'whsec_not base64!!', `whsec_${Buffer.alloc(65).toString('base64')}`]) {
    assert.match(problems({ webhooks: [{ url: 'https://p.example/h', secret }] }), /webhooks\[0\]\.secret.*whsec_.*24 to 64.*openssl rand -base64 32/, secret);
  }
  assert.equal(parse({ webhooks: [{ url: 'https://p.example/h', secret: `whsec_${Buffer.alloc(64).toString('base64')}` }] }).webhooks.length, 1);
});

test('unknown events, non-http URLs, unknown keys and a URL listed twice are refused', () => {
  assert.match(problems({ webhooks: [{ url: 'https://p.example/h', secret: SECRET, events: ['issuance-started'] }] }), /webhooks\[0\]\.events\[0\].*one of domain-bound/);
  assert.match(problems({ webhooks: [{ url: 'ftp://p.example/h', secret: SECRET }] }), /webhooks\[0\]\.url.*http\(s\) URL/);
  assert.match(problems({ webhooks: [{ url: 'https://p.example/h', secret: SECRET, timeout: '5s' }] }), /timeout/);
  assert.match(problems({ webhooks: [{ url: 'https://p.example/h', secret: SECRET }, { url: 'https://p.example/h', secret: SECRET }] }), /webhooks\[1\]\.url.*already webhooks\[0\]/);
});
