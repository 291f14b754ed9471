// The address picker of host-name upstreams: round robin, passive health (skipped for 10 s after a
// refusal, doubling to a cap, unless all are down), and which requests may be retried.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { AddressBalancer, DOWN_BASE_MS, DOWN_MAX_MS, isConnectFailure, mayRetry } from '../../src/proxy/balancer.ts';

function clock(): { now: () => number; advance: (ms: number) => void } {
  let t = 1_000_000;
  return { now: () => t, advance: (ms) => (t += ms) };
}

describe('AddressBalancer', () => {
  it('spreads round robin over every address', () => {
    const b = new AddressBalancer();
    b.setAddresses(['10.0.0.1', '10.0.0.2', '10.0.0.3']);
    const counts = new Map<string, number>();
    for (let i = 0; i < 300; i++) {
      const a = b.pick()!;
      counts.set(a, (counts.get(a) ?? 0) + 1);
    }
    assert.deepEqual([...counts.values()], [100, 100, 100]);
  });

  it('skips an address that refused for 10 s, doubling with each refusal up to the cap', () => {
    const c = clock();
    const b = new AddressBalancer({ now: c.now });
    b.setAddresses(['a', 'b']);
    b.failed('b');
    for (let i = 0; i < 10; i++) assert.equal(b.pick(), 'a');
    c.advance(DOWN_BASE_MS - 1);
    assert.equal(b.isDown('b'), true);
    c.advance(1);
    assert.equal(b.isDown('b'), false, 'back after 10 s');
    b.failed('b');
    c.advance(DOWN_BASE_MS);
    assert.equal(b.isDown('b'), true, 'second refusal: 20 s');
    c.advance(DOWN_BASE_MS);
    assert.equal(b.isDown('b'), false);
    for (let i = 0; i < 30; i++) b.failed('b');
    c.advance(DOWN_MAX_MS - 1);
    assert.equal(b.isDown('b'), true);
    c.advance(1);
    assert.equal(b.isDown('b'), false, 'never longer than the cap');
    b.succeeded('b');
    b.failed('b');
    c.advance(DOWN_BASE_MS);
    assert.equal(b.isDown('b'), false, 'an answer resets the doubling');
  });

  it('when every address is down, still picks (spreading), and pick(exclude) avoids the one just tried', () => {
    const b = new AddressBalancer();
    b.setAddresses(['a', 'b']);
    b.failed('a');
    b.failed('b');
    assert.deepEqual(new Set([b.pick(), b.pick(), b.pick(), b.pick()]), new Set(['a', 'b']));
    assert.equal(b.pick('a'), 'b');
    b.setAddresses(['a']);
    assert.equal(b.pick('a'), undefined, 'no other address to retry on');
  });

  it('a new answer keeps the health of addresses still in it and forgets the rest', () => {
    const b = new AddressBalancer();
    b.setAddresses(['a', 'b', 'c']);
    b.failed('a');
    b.failed('c');
    b.setAddresses(['a', 'b']);
    assert.equal(b.isDown('a'), true);
    b.setAddresses(['a', 'b', 'c']);
    assert.equal(b.isDown('c'), false);
  });

  it('property: pick never returns a down address while a healthy one exists, and only listed ones', () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant('fail' as const), i: fc.nat(5) }),
      fc.record({ kind: fc.constant('ok' as const), i: fc.nat(5) }),
      fc.record({ kind: fc.constant('tick' as const), ms: fc.integer({ min: 0, max: 40_000 }) }),
      fc.record({ kind: fc.constant('answer' as const), n: fc.integer({ min: 1, max: 6 }) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const c = clock();
        const b = new AddressBalancer({ now: c.now });
        const names = ['a', 'b', 'c', 'd', 'e', 'f'];
        b.setAddresses(names.slice(0, 3));
        for (const o of ops) {
          if (o.kind === 'fail') b.failed(names[o.i]!);
          else if (o.kind === 'ok') b.succeeded(names[o.i]!);
          else if (o.kind === 'tick') c.advance(o.ms);
          else b.setAddresses(names.slice(0, o.n));
          const picked = b.pick();
          assert.ok(picked !== undefined && b.addresses.includes(picked));
          const healthy = b.addresses.filter((a) => !b.isDown(a));
          if (healthy.length > 0) assert.ok(healthy.includes(picked), `${picked} is down while ${healthy.join(',')} are not`);
        }
      }),
      { seed: 42, numRuns: 300 },
    );
  });
});

describe('retry rules', () => {
  it('only idempotent methods without a body are retried', () => {
    for (const m of ['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE', 'get']) assert.equal(mayRetry(m, false), true, m);
    for (const m of ['POST', 'PATCH', 'CONNECT']) assert.equal(mayRetry(m, false), false, m);
    assert.equal(mayRetry('PUT', true), false, 'a streamed body cannot be replayed');
  });

  it('refused, timed out and reset count as the address not serving; a 5xx-ish or client error does not', () => {
    for (const code of ['ECONNREFUSED', 'UND_ERR_CONNECT_TIMEOUT', 'ECONNRESET', 'UND_ERR_SOCKET']) assert.equal(isConnectFailure(code), true, code);
    for (const code of ['UND_ERR_HEADERS_TIMEOUT', 'CLIENT_GONE', 'UPSTREAM_NOT_ALLOWED', 'ENOTFOUND']) assert.equal(isConnectFailure(code), false, code);
  });
});
