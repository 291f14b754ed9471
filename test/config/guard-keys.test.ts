// The onDemand.dns and onDemand.limits keys: defaults, spellings, and errors that name the key.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parse, problems } from '../support/config.ts';


test('onDemand.dns: off by default; targets required; defaults for the rest', () => {
  assert.equal(parse({}).onDemand.dns, undefined);
  const dns = parse({ onDemand: { dns: { targets: ['203.0.113.10', 'Edge.Platform.Example.', '2001:db8::1'], resolvers: ['127.0.0.1:8053', '[::1]:53', '192.0.2.53'] } } }).onDemand.dns!;
  assert.deepEqual(dns, {
    targets: ['203.0.113.10', 'Edge.Platform.Example.', '2001:db8::1'],
    resolvers: ['127.0.0.1:8053', '[::1]:53', '192.0.2.53'],
    match: 'all',
    cacheTtl: 300_000,
    negativeCacheTtl: 30_000,
    staleFor: 3_600_000,
    timeout: 2000,
  });
  assert.match(problems({ onDemand: { dns: {} } }), /onDemand\.dns\.targets/);
  assert.match(problems({ onDemand: { dns: { targets: [] } } }), /onDemand\.dns\.targets: list at least one target/);
  assert.match(problems({ onDemand: { dns: { targets: ['not a host'] } } }), /onDemand\.dns\.targets\[0\]: each target must be an IP address/);
  assert.match(problems({ onDemand: { dns: { targets: ['1.2.3.4'], resolvers: ['dns.google:53'] } } }), /onDemand\.dns\.resolvers\[0\]: each resolver must be an IP address/);
  assert.match(problems({ onDemand: { dns: { targets: ['1.2.3.4'], match: 'some' } } }), /onDemand\.dns\.match: must be "all"/);
  assert.match(problems({ onDemand: { dns: { targets: ['1.2.3.4'], staleFor: 'forever' } } }), /onDemand\.dns\.staleFor: "forever" is not a duration/);
});

test('onDemand.limits: on by default; false turns a bucket off; errors name the key', () => {
  assert.deepEqual(parse({}).onDemand.limits, { perClient: { rate: 5, burst: 100 }, global: { rate: 100, burst: 1000 }, budgetShare: 0.25, unknownNameCache: 100_000, maxQueuedIssuances: 256 });
  const limits = parse({ onDemand: { limits: { perClient: false, global: { rate: 0.5, burst: 10 }, budgetShare: 1, unknownNameCache: 5000 } } }).onDemand.limits;
  assert.deepEqual(limits, { perClient: false, global: { rate: 0.5, burst: 10 }, budgetShare: 1, unknownNameCache: 5000, maxQueuedIssuances: 256 });
  for (const bad of [0, -0.1, 1.5, '25%']) assert.match(problems({ onDemand: { limits: { budgetShare: bad } } }), /onDemand\.limits\.budgetShare/);
  assert.match(problems({ onDemand: { limits: { perClient: { rate: 0, burst: 1 } } } }), /onDemand\.limits\.perClient/);
  assert.match(problems({ onDemand: { limits: { global: { rate: 1, burst: 0 } } } }), /onDemand\.limits\.global/);
  assert.match(problems({ onDemand: { limits: { unknownNameCache: 10 } } }), /onDemand\.limits\.unknownNameCache: must be at least 100/);
  assert.match(problems({ onDemand: { limits: { perIp: {} } } }), /onDemand\.limits/);
});

test('onDemand.limits.maxQueuedIssuances: 256 by default, 0 allowed (never wait), a whole number', () => {
  assert.equal(parse({ onDemand: { limits: { maxQueuedIssuances: 0 } } }).onDemand.limits.maxQueuedIssuances, 0);
  assert.match(problems({ onDemand: { limits: { maxQueuedIssuances: -1 } } }), /onDemand\.limits\.maxQueuedIssuances: must be a whole number/);
  assert.match(problems({ onDemand: { limits: { maxQueuedIssuances: 2.5 } } }), /onDemand\.limits\.maxQueuedIssuances/);
});
