import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { silentLogger } from '../../src/util/log.ts';
import { HostPatternSet } from '../../src/net/patterns.ts';
import { OnDemandPolicy } from '../../src/policy/policy.ts';
import { onDemandSection } from '../support/config.ts';
import { capturingLogger } from '../support/log-lines.ts';

test('host patterns: exact, *.suffix (one label) and **.suffix (any depth)', () => {
  const set = new HostPatternSet(['shop.example.com', '*.customers.test', '**.deep.test', '*.both.test', '**.both.test', '*.bücher.test']);
  assert.ok(set.matches('shop.example.com'));
  assert.ok(set.matches('a.customers.test'));
  assert.ok(!set.matches('a.b.customers.test'), '*. is one label');
  assert.ok(!set.matches('customers.test'));
  assert.ok(!set.matches('www.shop.example.com'));
  assert.ok(!set.matches('xcustomers.test'));
  assert.ok(set.matches('a.deep.test'));
  assert.ok(set.matches('a.b.c.deep.test'), '**. is any depth');
  assert.ok(!set.matches('deep.test'), '**. does not match the suffix itself');
  assert.ok(set.matches('a.both.test') && set.matches('a.b.both.test'));
  assert.ok(set.matches('a.xn--bcher-kva.test'), 'Unicode suffixes are converted to A-labels');
  assert.throws(() => new HostPatternSet(['*.xn--a.test']), /invalid host pattern "\*\.xn--a\.test"/);
  assert.throws(() => new HostPatternSet(['***.x.test']), /invalid host pattern/);
});

/** The time limit of the time-out case, and how late the slow answer comes (50 times later). */
const ASK_TIMEOUT_MS = 200;
const SLOW_ANSWER_MS = 10_000;

describe('ask endpoint', () => {
  let server: Server;
  let url: string;
  const hits: string[] = [];
  const queries: string[] = [];
  before(async () => {
    server = createServer((req, res) => {
      const query = new URL(req.url!, 'http://x');
      const domain = query.searchParams.get('domain')!;
      hits.push(domain);
      queries.push(query.search.slice(1));
      if (domain.startsWith('yes.')) res.writeHead(204).end();
      // Answers "allowed", but only after SLOW_ANSWER_MS.
      else if (domain.startsWith('slow.')) setTimeout(() => res.writeHead(200).end(), SLOW_ANSWER_MS).unref();
      else res.writeHead(403).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/allow?token=abc`;
  });
  after(() => {
    server.closeAllConnections();
    server.close();
  });

  // A time limit no answer from this local server comes near, however loaded the machine; the
  // time-out case gets its own short one.
  const policy = (askTimeoutMs = 30_000) => new OnDemandPolicy(onDemandSection({ ask: url, askTimeout: askTimeoutMs, askCacheTtl: 60_000, askDenyCacheTtl: 60_000 }), { logger: silentLogger() });

  test('2xx allows, 403 denies; existing query kept', async () => {
    const p = policy();
    hits.length = 0;
    queries.length = 0;
    assert.deepEqual(await p.decide('yes.example.com'), { allowed: true, source: 'ask' });
    assert.equal((await p.decide('no.example.com')).allowed, false);
    assert.deepEqual(hits, ['yes.example.com', 'no.example.com']);
    assert.deepEqual(queries, ['token=abc&domain=yes.example.com', 'token=abc&domain=no.example.com']);
  });

  test('an answer later than askTimeoutMs denies, naming the time limit it ran into', async () => {
    const slow = await policy(ASK_TIMEOUT_MS).decide('slow.example.com');
    assert.equal(slow.allowed, false);
    assert.match((slow as { reason: string }).reason, new RegExp(`timed out after ${ASK_TIMEOUT_MS} ms`));
  });

  test('decisions are cached both ways, concurrent asks are shared', async () => {
    const p = policy();
    hits.length = 0;
    await Promise.all([p.decide('yes.cache.com'), p.decide('yes.cache.com'), p.decide('yes.cache.com')]);
    await p.decide('yes.cache.com');
    await p.decide('no.cache.com');
    await p.decide('no.cache.com');
    assert.deepEqual(hits, ['yes.cache.com', 'no.cache.com']);
  });

  test('a flood of denied asks logs a few sampled lines with the count left out; every approval is logged', async () => {
    const { logger, lines } = capturingLogger();
    const p = new OnDemandPolicy(onDemandSection({ ask: url, askTimeout: 30_000, askCacheTtl: 60_000, askDenyCacheTtl: 60_000 }), { logger });
    for (let i = 0; i < 30; i++) assert.equal((await p.decide(`r${i}.flood.example`)).allowed, false);
    for (let i = 0; i < 3; i++) assert.equal((await p.decide(`yes.${i}.example.com`)).allowed, true);
    const asked = lines.filter((l) => l.step === 'policy-ask');
    assert.equal(asked.filter((l) => l.allowed === false).length, 10, 'ten denials per 10 s');
    assert.deepEqual(asked.filter((l) => l.allowed === true).map((l) => l.domain), ['yes.0.example.com', 'yes.1.example.com', 'yes.2.example.com']);
  });

  test('no policy at all denies everything', async () => {
    const p = new OnDemandPolicy(onDemandSection({ askTimeout: 100, askCacheTtl: 1, askDenyCacheTtl: 1 }), { logger: silentLogger() });
    assert.equal((await p.decide('any.example.com')).allowed, false);
  });
});
