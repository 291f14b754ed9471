// The shape of src/ (issue 14), read from the sources with the TypeScript parser:
//   - every import goes to the same folder or one below it in the layers of docs/architecture.md
//     (read from its `layers:` line, so the doc and the code cannot drift apart);
//   - no import cycle (type-only and dynamic imports count: they are dependencies to a reader too);
//   - every exported declaration has a doc comment;
//   - no function is longer than 80 lines (data literals excepted); startGateway at most 60.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { importCycles, importsOf, longFunctions, parseSources, rel, ROOT, undocumentedExports } from './support/structure.ts';

const SRC = join(ROOT, 'src');
const sources = parseSources(['src']);

/** The layers, bottom first, as docs/architecture.md lists them. */
function layers(): string[] {
  const line = readFileSync(join(ROOT, 'docs/architecture.md'), 'utf8').split('\n').find((l) => l.startsWith('layers:'));
  assert.ok(line, 'docs/architecture.md has a `layers:` line');
  return line.slice('layers:'.length).trim().split(/\s+/);
}

/** A file's layer: its top folder under src/, or the file's own name for a file directly in src/. */
const layerOf = (file: string): string => relative(SRC, file).split('/')[0]!.replace(/\.ts$/, '');

test('every import goes to the same layer or one below it (docs/architecture.md)', () => {
  const order = layers();
  const wrong: string[] = [];
  for (const [file, sf] of sources) {
    const from = order.indexOf(layerOf(file));
    if (from === -1) wrong.push(`${rel(file)}: ${layerOf(file)} is in no layer`);
    for (const target of importsOf(sf)) {
      if (!target.startsWith(SRC + '/')) continue;
      if (order.indexOf(layerOf(target)) > from) wrong.push(`${rel(file)} -> ${rel(target)}`);
    }
  }
  assert.deepEqual(wrong, []);
});

test('no import cycle in src/', () => {
  assert.deepEqual(importCycles(sources), []);
});

test('every exported declaration in src/ has a doc comment', () => {
  assert.deepEqual(undocumentedExports(sources), []);
});

test('no function in src/ is longer than 80 lines; startGateway at most 60', () => {
  assert.deepEqual(longFunctions(sources, 80), []);
  assert.deepEqual(longFunctions(parseSources(['src/gateway/index.ts']), 60), []);
});
