// The shape of the folders issue 14 gave to issuance (src/issuance, src/tls, src/policy,
// src/maintain, src/util), read from the sources with the TypeScript parser:
//   - issuance/ imports nothing from the folders that use it (tls/, maintain/, admin/, gateway/,
//     the server); policy/ nothing from issuance/ (policy answers one question, below issuance);
//     util/ nothing from any other folder of src/;
//   - no import cycle between these files (type-only imports count: they are cycles to a reader);
//   - every exported declaration has a doc comment; no function is longer than 80 lines.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join, relative } from 'node:path';
import { importCycles, importsOf, longFunctions, parseSources, rel, ROOT, undocumentedExports } from '../support/structure.ts';

const SRC = join(ROOT, 'src');
const FOLDERS = ['issuance', 'tls', 'policy', 'maintain', 'util'];
const MAX_FUNCTION_LINES = 80;

const sources = parseSources(FOLDERS.map((folder) => join(SRC, folder)));
const folderOf = (file: string): string => relative(SRC, file).split('/')[0]!;

test('issuance/ imports nothing from its users; policy/ nothing from issuance/; util/ nothing from other folders', () => {
  const forbidden: Record<string, (target: string) => boolean> = {
    issuance: (t) => ['tls', 'maintain', 'admin', 'gateway', 'server.ts', 'cli.ts'].includes(folderOf(t)),
    policy: (t) => folderOf(t) === 'issuance',
    util: (t) => folderOf(t) !== 'util',
  };
  const wrong: string[] = [];
  for (const [file, sf] of sources) {
    const rule = forbidden[folderOf(file)];
    for (const target of importsOf(sf)) if (rule?.(target)) wrong.push(`${rel(file)} -> ${rel(target)}`);
  }
  assert.deepEqual(wrong, []);
});

test('no import cycle among src/issuance, tls, policy, maintain, util', () => {
  assert.deepEqual(importCycles(sources), []);
});

test('every exported declaration has a doc comment', () => {
  assert.deepEqual(undocumentedExports(sources), []);
});

test(`no function is longer than ${MAX_FUNCTION_LINES} lines`, () => {
  assert.deepEqual(longFunctions(sources, MAX_FUNCTION_LINES), []);
});
