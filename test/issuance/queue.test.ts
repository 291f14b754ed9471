// The ACME work queue: a renewal backlog never delays a new customer's first request.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setImmediate as tick } from 'node:timers/promises';
import { IssuancePriority, PriorityWorkQueue } from '../../src/issuance/queue.ts';

describe('PriorityWorkQueue', () => {
  test('a renewal backlog does not starve an on-demand request: it gets the next free slot', async () => {
    const queue = new PriorityWorkQueue(2);
    const order: string[] = [];
    const releases = new Map<string, () => void>();
    const start = (name: string, priority: number) =>
      queue.acquire(priority).then((release) => {
        order.push(name);
        releases.set(name, release);
      });
    // Two renewals hold both slots, 50 more renewals wait.
    const running = [start('renewal-0', IssuancePriority.renewal), start('renewal-1', IssuancePriority.renewal)];
    for (let i = 2; i < 52; i++) running.push(start(`renewal-${i}`, IssuancePriority.renewal));
    await tick();
    assert.equal(queue.inUse, 2);
    assert.equal(queue.waiting(IssuancePriority.renewal), 50);
    // A new customer arrives behind the backlog.
    running.push(start('customer', IssuancePriority.onDemand));
    await tick();
    releases.get('renewal-0')!();
    await tick();
    assert.deepEqual(order.slice(0, 3), ['renewal-0', 'renewal-1', 'customer'], 'the first slot freed goes to the customer');
    // Everything else still runs, in arrival order, never more than the limit at once.
    for (let i = 1; i < 52; i++) {
      releases.get(`renewal-${i}`)!();
      await tick();
      assert.ok(queue.inUse <= 2);
    }
    releases.get('customer')!();
    await Promise.all(running);
    assert.deepEqual(order.slice(3), Array.from({ length: 50 }, (_, i) => `renewal-${i + 2}`));
    assert.equal(queue.inUse, 0);
  });

  test('admin work goes between on-demand and renewals; equal priorities keep arrival order', async () => {
    const queue = new PriorityWorkQueue(1);
    const order: string[] = [];
    const first = await queue.acquire(IssuancePriority.renewal);
    const all = [
      ['r1', IssuancePriority.renewal],
      ['a1', IssuancePriority.admin],
      ['o1', IssuancePriority.onDemand],
      ['r2', IssuancePriority.renewal],
      ['o2', IssuancePriority.onDemand],
    ].map(([name, p]) =>
      queue.acquire(p as number).then((release) => {
        order.push(name as string);
        release();
      }),
    );
    await tick();
    first();
    await Promise.all(all);
    assert.deepEqual(order, ['o1', 'o2', 'a1', 'r1', 'r2']);
  });

  test('acquireWithin: at most maxWaiting waiters of its own priority; other priorities do not count', async () => {
    const queue = new PriorityWorkQueue(1);
    const running = await queue.acquireWithin(IssuancePriority.onDemand, 0);
    assert.ok(running, 'a free slot is taken even with no room to wait');
    const renewals = Array.from({ length: 5 }, () => queue.acquire(IssuancePriority.renewal));
    const waiter = queue.acquireWithin(IssuancePriority.onDemand, 1);
    assert.equal(await queue.acquireWithin(IssuancePriority.onDemand, 1), null, 'a second on-demand waiter is over the bound');
    assert.equal(await queue.acquireWithin(IssuancePriority.onDemand, 0), null);
    assert.equal(queue.waiting(IssuancePriority.onDemand), 1);
    running();
    const next = await waiter;
    assert.ok(next, 'the waiter within the bound got the slot first');
    next();
    for (const r of renewals) (await r)();
    assert.equal(queue.inUse, 0);
  });

  test('release is idempotent', async () => {
    const queue = new PriorityWorkQueue(1);
    const release = await queue.acquire(IssuancePriority.onDemand);
    release();
    release();
    assert.equal(queue.inUse, 0);
  });
});
