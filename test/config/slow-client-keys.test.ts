// The slow-client keys (issue 16, item 6): tls.handshakeTimeout, listen.maxConnections,
// listen.headersTimeout, listen.keepAliveTimeout, listen.requestTimeout: defaults, spellings, and
// errors that name the key.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parse, problems } from '../support/config.ts';

test('defaults: handshake 10s, 20000 connections per listener, headers 10s, keep-alive 60s, request time-out off', () => {
  const c = parse({});
  assert.equal(c.tls.handshakeTimeout, 10_000);
  assert.equal(c.listen.maxConnections, 20_000);
  assert.equal(c.listen.headersTimeout, 10_000);
  assert.equal(c.listen.keepAliveTimeout, 60_000);
  assert.equal(c.listen.requestTimeout, 0);
});

test('the default handshake time-out may be shorter than onDemand.handshakeWait (the SNI wait is not counted)', () => {
  const c = parse({ tls: { handshakeTimeout: '5s' }, onDemand: { handshakeWait: '30s' } });
  assert.equal(c.tls.handshakeTimeout, 5000);
  assert.equal(c.onDemand.handshakeWait, 30_000);
});

test('durations and counts as the issue spells them', () => {
  const c = parse({ tls: { handshakeTimeout: '10s' }, listen: { maxConnections: 20000, headersTimeout: '15s', keepAliveTimeout: '2m', requestTimeout: '5m' } });
  assert.deepEqual(
    [c.tls.handshakeTimeout, c.listen.maxConnections, c.listen.headersTimeout, c.listen.keepAliveTimeout, c.listen.requestTimeout],
    [10_000, 20_000, 15_000, 120_000, 300_000],
  );
});

test('refused with the key named', () => {
  assert.match(problems({ tls: { handshakeTimeout: '500ms' } }), /tls\.handshakeTimeout: must be at least 1s/);
  assert.match(problems({ tls: { handshakeTimeout: 'soon' } }), /tls\.handshakeTimeout: "soon" is not a duration/);
  assert.match(problems({ listen: { maxConnections: 0 } }), /listen\.maxConnections: must be at least 1/);
  assert.match(problems({ listen: { maxConnections: 1.5 } }), /listen\.maxConnections: expected int/);
  assert.match(problems({ listen: { headersTimeout: '0s' } }), /listen\.headersTimeout: must be at least 1s/);
  assert.match(problems({ listen: { keepAliveTimeout: 0 } }), /listen\.keepAliveTimeout: must be above 0/);
  assert.match(problems({ listen: { requestTimeout: '5s', headersTimeout: '10s' } }), /listen\.requestTimeout: must be 0 \(off\) or at least listen\.headersTimeout/);
  assert.match(problems({ listen: { maxconnections: 5 } }), /maxconnections/);
});
