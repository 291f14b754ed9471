// The shape of the gateway's folders (issue 14), read from the sources with the TypeScript parser:
//   - src/gateway/index.ts's startGateway reads like the list of parts: at most 60 lines;
//   - no import cycle inside these folders (type-only imports count);
//   - every exported declaration has a doc comment; no function is longer than 80 lines.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { importCycles, longFunctions, parseSources, undocumentedExports } from '../support/structure.ts';

const OWNED = ['src/gateway', 'src/admin', 'src/cluster', 'src/config', 'src/proxy', 'src/cli.ts', 'src/log.ts', 'src/events.ts'];
const MAX_FUNCTION_LINES = 80;
const sources = parseSources(OWNED);

test('startGateway is at most 60 lines', () => {
  assert.deepEqual(longFunctions(parseSources(['src/gateway/index.ts']), 60), []);
});

test('no import cycle inside the gateway, admin, cluster, config and proxy folders', () => {
  assert.deepEqual(importCycles(sources), []);
});

test('every exported declaration in them has a doc comment', () => {
  assert.deepEqual(undocumentedExports(sources), []);
});

test(`no function in them is longer than ${MAX_FUNCTION_LINES} lines`, () => {
  assert.deepEqual(longFunctions(sources, MAX_FUNCTION_LINES), []);
});
