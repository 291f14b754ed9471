// The denial path under a flood (issue 19, item 5): names anyone can make policy deny (random SNI)
// cost a sampled log line, not one each; every denial is still remembered.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AttemptGates, type GatesOptions } from '../../src/issuance/gates.ts';
import { capturingLogger } from '../support/log-lines.ts';

test('1,000 names policy denies: each denied and remembered, at most 10 "denied" lines (with the count left out)', async () => {
  const { logger, lines } = capturingLogger('info');
  const gates = new AttemptGates({
    policy: { decide: async () => ({ allowed: false, reason: 'not in onDemand.allow' }) } as unknown as GatesOptions['policy'],
    failures: {} as GatesOptions['failures'],
    onDemand: { askDenyCacheTtl: 60_000, limits: { unknownNameCache: 10_000 } },
    logger,
  });
  for (let i = 0; i < 1000; i++) {
    const verdict = await gates.pass(`n${i}.flood.example`, undefined);
    assert.equal(verdict.kind, 'denied');
  }
  assert.equal(gates.remembered('n999.flood.example')?.kind, 'denied');
  const denied = lines.filter((l) => l.msg === 'on-demand certificate denied');
  assert.ok(denied.length >= 1 && denied.length <= 10, `${denied.length} lines`);
});
