// The `certificates` key (managed certificates, issue 15): names normalised like onDemand.allow,
// a wildcard only as `*.` one label, refused without acme.dns (only dns-01 validates it), a name
// in one entry only; errors name the key.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parse, problems } from '../support/config.ts';

test('certificates: none by default; names normalised, the first kept first', () => {
  assert.deepEqual(parse({}).certificates, []);
  assert.deepEqual(parse({ certificates: [{ names: ['M1.Managed.Test', 'bücher.managed.test'] }] }).certificates, [{ names: ['m1.managed.test', 'xn--bcher-kva.managed.test'] }]);
});

test('certificates: errors name the entry and the name', () => {
  assert.match(problems({ certificates: [{ names: [] }] }), /certificates\[0\]\.names: list at least one name/);
  assert.match(problems({ certificates: [{ names: ['**.platform.example'] }] }), /certificates\[0\]\.names\[0\]: "\*\*\.platform\.example" is not a certificate name/);
  assert.match(problems({ certificates: [{ names: ['a.*.example'] }] }), /certificates\[0\]\.names\[0\]/);
  assert.match(problems({ certificates: [{ names: ['a.test'] }, { names: ['b.test', 'a.test'] }] }), /certificates\[1\]\.names\[1\]: a\.test is already in certificates\[0\]/);
  assert.match(problems({ certificates: [{ names: ['a.test'], extra: 1 }] }), /certificates\[0\]/);
});

test('certificates: a wildcard name without acme.dns is a config error (only dns-01 can validate it)', () => {
  assert.match(problems({ certificates: [{ names: ['*.platform.example', 'platform.example'] }] }), /certificates\[0\]\.names\[0\]: \*\.platform\.example is a wildcard: only dns-01 can validate it; configure acme\.dns/);
});
