// hostnameStatus: the one rule list and single GET share. A property over every combination of
// its inputs checks the documented precedence; the DNS sentence names address and records.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { dnsSentence, hostnameStatus } from '../../src/admin/hostname-status.ts';
import type { NameRetryState } from '../../src/issuance/backoff.ts';

const NOW = Date.parse('2030-01-01T00:00:00Z');

const failure = (retryAt: number | null): NameRetryState => ({ failures: 1, firstFailureAt: NOW - 1000, lastFailureAt: NOW - 1000, retryAt, reason: 'x', step: 'authorization', stagingFirst: [], issuers: 'i' });

describe('hostname status', () => {
  test('disabled > active (valid certificate) > blocked (given up) > failed > pending', () => {
    const prop = fc.property(
      fc.boolean(),
      fc.option(fc.integer({ min: -10, max: 10 }), { nil: undefined }),
      fc.constantFrom<'none' | 'retry' | 'given-up'>('none', 'retry', 'given-up'),
      (enabled, certDays, fail) => {
        const certificate = certDays === undefined ? null : { notAfter: new Date(NOW + certDays * 86_400_000).toISOString(), issuer: null, ca: 'c' };
        const record = fail === 'none' ? null : failure(fail === 'retry' ? NOW + 60_000 : null);
        const status = hostnameStatus({ enabled }, certificate, record, NOW);
        const expected = !enabled ? 'disabled' : certDays !== undefined && certDays > 0 ? 'active' : fail === 'given-up' ? 'blocked' : fail === 'retry' ? 'failed' : 'pending';
        assert.equal(status, expected);
      },
    );
    fc.assert(prop, { seed: 42, numRuns: 300 });
  });

  test('the DNS sentence names what the name points at and the records to create', () => {
    assert.equal(
      dnsSentence('blog.alice.com', ['203.0.113.9'], 'x', ['edge.platform.example', '198.51.100.7']),
      'blog.alice.com points at 203.0.113.9; create a CNAME to edge.platform.example (or an A record to 198.51.100.7).',
    );
    assert.equal(dnsSentence('b.alice.com', [], 'name does not resolve', ['2001:db8::1']), 'b.alice.com does not resolve; create an AAAA record to 2001:db8::1.');
  });
});
