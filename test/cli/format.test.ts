// The CLI's tables (src/cli/format.ts): aligned columns whatever the cells (property, seed 42),
// error sentences printed under their hostname, the hostname answer of the admin API (issue 17:
// enabled, lifecycle status, verification, errors) and that of an older one (status active |
// disabled, nothing else) both shown without failing.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { certificateDetails, failureLines, hostnameDetails, hostnameTable, table, type HostnameView } from '../../src/cli/format.ts';

test('table: every cell of a column starts where its header does', () => {
  const cell = fc.string({ minLength: 1, maxLength: 12 }).filter((s) => !/\s/.test(s));
  const rows = fc.integer({ min: 1, max: 5 }).chain((n) => fc.array(fc.array(cell, { minLength: n, maxLength: n }), { minLength: 1, maxLength: 6 }));
  fc.assert(
    fc.property(rows, (input) => {
      const lines = table(input);
      const widths = input[0]!.map((_, i) => Math.max(...input.map((r) => r[i]!.length)));
      input.forEach((row, r) => {
        let at = 0;
        row.forEach((value, i) => {
          assert.equal(lines[r]!.slice(at, at + value.length), value);
          at += widths[i]! + 2;
        });
        assert.equal(lines[r], lines[r]!.trimEnd());
      });
    }),
    { seed: 42, numRuns: 300 },
  );
});

const pending: HostnameView = {
  name: 'blog.alice.com',
  status: 'pending',
  enabled: true,
  tenant: 'alice',
  verification: {
    checkedAt: '2026-12-07T13:00:00.000Z',
    dns: { ok: false, resolved: ['203.0.113.9'], expected: ['edge.platform.example'], reason: 'points elsewhere' },
    caa: null,
    ownership: { record: { name: '_certgate.blog.alice.com', type: 'TXT', value: 'tok123' }, verified: false },
    lastError: null,
    nextRetry: null,
    certificate: null,
  },
  errors: ['blog.alice.com points at 203.0.113.9; create a CNAME to edge.platform.example.'],
};

test('hostnameTable: a row per hostname, its error sentences under it', () => {
  const active: HostnameView = { name: 'shop.bob.io', status: 'active', enabled: true, errors: [], verification: { certificate: { notAfter: '2027-03-07T12:00:00.000Z', issuer: null, ca: 'pebble' } } };
  const lines = hostnameTable([pending, active]).trimEnd().split('\n');
  assert.deepEqual(lines, [
    'NAME            STATUS   ENABLED  EXPIRES     UPSTREAM  TENANT',
    'blog.alice.com  pending  yes      -           -         alice',
    '    ! blog.alice.com points at 203.0.113.9; create a CNAME to edge.platform.example.',
    'shop.bob.io     active   yes      2027-03-07  -         -',
  ]);
});

test('hostnameDetails: status, the checks, what to fix', () => {
  const text = hostnameDetails(pending);
  assert.match(text, /^status: +pending$/m);
  assert.match(text, /^certificate: +none$/m);
  assert.match(text, /^dns: +wrong: resolves to 203\.0\.113\.9; expected edge\.platform\.example$/m);
  assert.match(text, /^ownership: +TXT _certgate\.blog\.alice\.com tok123: not seen yet$/m);
  assert.match(text, /errors:\n {2}- blog\.alice\.com points at 203\.0\.113\.9; create a CNAME to edge\.platform\.example\.\n$/);
});

test('an older admin API (status active|disabled, no enabled, no verification) still prints', () => {
  const older: HostnameView = { name: 'old.example', status: 'disabled' };
  assert.match(hostnameTable([older]), /^old\.example +disabled +no +- +- +-$/m);
  const text = hostnameDetails(older);
  assert.match(text, /^enabled: +no$/m);
  assert.doesNotMatch(text, /certificate:|errors:/);
});

test('certificateDetails and failureLines: failures only when there are some, aligned with the rest', () => {
  const base = { domain: 'a.example', serialNumber: '0abc', attempts: 0, lastError: null, nextRetryAt: null, givenUp: false };
  assert.doesNotMatch(certificateDetails(base), /failed attempts/);
  const failing = { ...base, attempts: 2, lastError: { at: '2026-12-07T13:00:00.000Z', step: 'authorization', error: 'boom' }, nextRetryAt: null, givenUp: true };
  assert.match(certificateDetails(failing), /^serial: {11}0abc\nfailed attempts: {2}2\nlast error: {7}authorization: boom \(2026-12-07T13:00:00\.000Z\)\nnext retry: {7}given up/m);
  assert.deepEqual(failureLines(base), []);
});
