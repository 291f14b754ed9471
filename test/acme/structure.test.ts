// The shape of src/acme/ (issue 14), read from the sources with the TypeScript parser:
//   - plumbing/ (RFC 8555 resources, transport, JWS, errors) never imports the porcelain above it;
//   - nothing in acme/ imports from maintain/ (ACME is below renewal scheduling);
//   - no import cycle inside acme/ (type-only imports count: they are cycles to a reader too);
//   - every exported declaration has a doc comment; no function is longer than 80 lines.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { importCycles, importsOf, longFunctions, parseSources, rel, ROOT, undocumentedExports } from '../support/structure.ts';

const ACME = join(ROOT, 'src/acme');
const MAX_FUNCTION_LINES = 80;

const sources = parseSources(['src/acme']);

test('plumbing never imports porcelain; acme imports nothing from maintain/', () => {
  const wrong: string[] = [];
  for (const file of sources.keys()) {
    for (const target of importsOf(sources, file)) {
      if (target.startsWith(join(ROOT, 'src/maintain/'))) wrong.push(`${rel(file)} -> ${rel(target)}`);
      const inPlumbing = (p: string): boolean => p.startsWith(join(ACME, 'plumbing') + '/');
      if (inPlumbing(file) && target.startsWith(ACME + '/') && !inPlumbing(target)) wrong.push(`${rel(file)} -> ${rel(target)}`);
    }
  }
  assert.deepEqual(wrong, []);
});

test('no import cycle inside src/acme', () => {
  assert.deepEqual(importCycles(sources), []);
});

test('every exported declaration in src/acme has a doc comment', () => {
  assert.deepEqual(undocumentedExports(sources), []);
});

test(`no function in src/acme is longer than ${MAX_FUNCTION_LINES} lines`, () => {
  assert.deepEqual(longFunctions(sources, MAX_FUNCTION_LINES), []);
});
