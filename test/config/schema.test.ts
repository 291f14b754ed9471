import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parse, problemList as problems } from '../support/config.ts';
import { LETS_ENCRYPT_PRODUCTION } from '../../src/config/schema.ts';


test('defaults: Let’s Encrypt production, 443/80 on all interfaces, ./data next to the config', () => {
  const c = parse({});
  assert.equal(c.acme.directory, LETS_ENCRYPT_PRODUCTION);
  assert.deepEqual(c.listen.https, { host: '::', port: 443 });
  assert.deepEqual(c.listen.http, { host: '::', port: 80 });
  assert.deepEqual(c.storage, { file: { path: '/etc/certgate/data' } });
  assert.equal(c.workers, 'auto');
  assert.equal(c.onDemand.maxConcurrentIssuances, 8);
  assert.equal(c.tls.ticketKeyRotation, 12 * 3_600_000);
});

test('redis storage: exactly one of url, sentinel, cluster; not together with file', () => {
  assert.deepEqual(parse({ storage: { redis: { url: 'redis://127.0.0.1:6379' } } }).storage, { redis: { url: 'redis://127.0.0.1:6379', prefix: 'certgate:' } });
  assert.match(problems({ storage: { redis: { url: 'http://x' } } }).join('\n'), /storage\.redis\.url: must be a redis:\/\//);
  assert.match(problems({ storage: { redis: {} } }).join('\n'), /storage\.redis: set exactly one of url, sentinel or cluster/);
  assert.match(problems({ storage: { file: { path: 'x' }, redis: { url: 'redis://h:1' } } }).join('\n'), /storage: choose one storage/);
});

test('workers: auto or a positive number', () => {
  assert.equal(parse({ workers: 3 }).workers, 3);
  assert.match(problems({ workers: 0 }).join('\n'), /workers: must be "auto"/);
  assert.match(problems({ workers: 'many' }).join('\n'), /workers: must be "auto"/);
});

test('IPv6 listen addresses', () => {
  assert.deepEqual(parse({ listen: { https: '[::1]:8443' } }).listen.https, { host: '::1', port: 8443 });
  assert.match(problems({ listen: { https: '[nope]:1' } }).join('\n'), /listen\.https/);
  assert.match(problems({ listen: { http: '127.0.0.1:70000' } }).join('\n'), /listen\.http/);
});

test('durations something waits for with a timer are at most 24 days (a longer Node timer fires at once)', () => {
  for (const raw of [{ onDemand: { handshakeWait: '30d' } }, { acme: { lockTtl: '25d' } }, { proxy: { upstreamTimeout: 2 ** 31 } }, { renewal: { checkInterval: '100d' } }, { acme: { retry: { delays: ['1m', '60d'] } } }]) {
    assert.match(problems(raw).join('\n'), /must be at most 24 days/, JSON.stringify(raw));
  }
  // Durations that are compared with clocks, not waited for, may be longer.
  assert.equal(parse({ acme: { retry: { giveUpAfter: '30d' } } }).acme.retry.giveUpAfter, 30 * 86_400_000);
  assert.equal(parse({ onDemand: { handshakeWait: '24d' } }).onDemand.handshakeWait, 24 * 86_400_000);
});
