// The shape of src/acme/ (issue 14) beyond what test/structure.test.ts checks for all of src/:
//   - plumbing/ (RFC 8555 resources, transport, JWS, errors) never imports the porcelain above it;
//   - nothing in acme/ imports from maintain/ (ACME is below renewal scheduling).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { importsOf, parseSources, rel, ROOT } from '../support/structure.ts';

const ACME = join(ROOT, 'src/acme');

const sources = parseSources([ACME]);

test('plumbing never imports porcelain; acme imports nothing from maintain/', () => {
  const wrong: string[] = [];
  const inPlumbing = (p: string): boolean => p.startsWith(join(ACME, 'plumbing') + '/');
  for (const [file, sf] of sources) {
    for (const target of importsOf(sf)) {
      if (target.startsWith(join(ROOT, 'src/maintain/'))) wrong.push(`${rel(file)} -> ${rel(target)}`);
      if (inPlumbing(file) && target.startsWith(ACME + '/') && !inPlumbing(target)) wrong.push(`${rel(file)} -> ${rel(target)}`);
    }
  }
  assert.deepEqual(wrong, []);
});
