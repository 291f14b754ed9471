// The config keys of renewal and roles: defaults, and errors that name the key and the fix.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parse, problems } from '../support/config.ts';


test('renewal and role defaults', () => {
  const c = parse({});
  assert.equal(c.role, 'all');
  assert.deepEqual(c.renewal, {
    fraction: 0.33,
    concurrency: 4,
    checkInterval: 60_000,
    jitter: 3_600_000,
    leaderLockTtl: 30_000,
    expiredGrace: 7 * 86_400_000,
    staleChallengeAge: 3_600_000,
  });
  assert.equal(c.acme.profile, undefined);
  const set = parse({ role: 'maintainer', renewal: { fraction: 0.5, concurrency: 10, checkInterval: '30s' }, acme: { profile: 'shortlived' } });
  assert.equal(set.role, 'maintainer');
  assert.equal(set.renewal.fraction, 0.5);
  assert.equal(set.renewal.checkInterval, 30_000);
  assert.equal(set.acme.profile, 'shortlived');
});

test('renewal and role errors name the key and the fix', () => {
  assert.match(problems({ role: 'primary' }), /role: must be "all" \(serve and maintain\), "edge" \(serve only\) or "maintainer"/);
  assert.match(problems({ renewal: { fraction: 1.5 } }), /renewal\.fraction: must be a number between 0 and 1, like 0\.33/);
  assert.match(problems({ renewal: { fraction: 0 } }), /renewal\.fraction: must be a number between 0 and 1/);
  assert.match(problems({ renewal: { concurrency: 0 } }), /renewal\.concurrency: must be a whole number of renewals from 1 to 100/);
  assert.match(problems({ renewal: { jitter: 'soon' } }), /renewal\.jitter: "soon" is not a duration/);
  assert.match(problems({ renewal: { interval: '1m' } }), /renewal/);
  assert.match(problems({ acme: { profile: '' } }), /acme\.profile: must be a profile name/);
});
