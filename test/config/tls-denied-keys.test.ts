// tls.denied (issue 19, item 5): how a name that gets no certificate is answered; default alert.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parse, problems } from '../support/config.ts';

test('default: alert; fallback as spelled', () => {
  assert.equal(parse({}).tls.denied, 'alert');
  assert.equal(parse({ tls: { denied: 'fallback' } }).tls.denied, 'fallback');
  assert.equal(parse({ tls: { denied: 'alert' } }).tls.denied, 'alert');
});

test('anything else is refused with the key named', () => {
  assert.match(problems({ tls: { denied: 'reset' } }), /tls\.denied: must be alert or fallback/);
  assert.match(problems({ tls: { denied: true } }), /tls\.denied: must be alert or fallback/);
});
