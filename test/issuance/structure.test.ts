// The shape of the folders issue 14 gave to issuance (src/issuance, src/tls, src/policy,
// src/maintain, src/util), read from the sources with the TypeScript parser:
//   - issuance/ imports nothing from the folders that use it (tls/, maintain/, admin/, gateway/,
//     the server); policy/ nothing from issuance/ (policy answers one question, below issuance);
//     util/ nothing from any other folder of src/;
//   - no import cycle between these files (type-only imports count: they are cycles to a reader);
//   - every exported declaration has a doc comment; no function is longer than 80 lines.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const SRC = join(ROOT, 'src');
const FOLDERS = ['issuance', 'tls', 'policy', 'maintain', 'util'];
const MAX_FUNCTION_LINES = 80;

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? filesUnder(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

const sources = new Map<string, ts.SourceFile>();
for (const folder of FOLDERS) {
  for (const file of filesUnder(join(SRC, folder))) sources.set(file, ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true));
}
const rel = (file: string): string => relative(ROOT, file);
const folderOf = (file: string): string => relative(SRC, file).split('/')[0]!;

/** Relative imports (static, type-only and re-exports) of a file, resolved to absolute paths. */
function importsOf(file: string): string[] {
  const out: string[] = [];
  for (const stmt of sources.get(file)!.statements) {
    const spec = (ts.isImportDeclaration(stmt) || ts.isExportDeclaration(stmt)) && stmt.moduleSpecifier && ts.isStringLiteral(stmt.moduleSpecifier) ? stmt.moduleSpecifier.text : undefined;
    if (spec?.startsWith('.')) out.push(resolve(dirname(file), spec));
  }
  return out;
}

test('issuance/ imports nothing from its users; policy/ nothing from issuance/; util/ nothing from other folders', () => {
  const forbidden: Record<string, (target: string) => boolean> = {
    issuance: (t) => ['tls', 'maintain', 'admin', 'gateway', 'server.ts', 'cli.ts'].includes(folderOf(t)),
    policy: (t) => folderOf(t) === 'issuance',
    util: (t) => folderOf(t) !== 'util',
  };
  const wrong: string[] = [];
  for (const file of sources.keys()) {
    const rule = forbidden[folderOf(file)];
    for (const target of importsOf(file)) if (rule?.(target)) wrong.push(`${rel(file)} -> ${rel(target)}`);
  }
  assert.deepEqual(wrong, []);
});

test('no import cycle among src/issuance, tls, policy, maintain, util', () => {
  const cycles: string[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (file: string, path: string[]): void => {
    if (state.get(file) === 'done') return;
    if (state.get(file) === 'visiting') {
      cycles.push([...path.slice(path.indexOf(file)), file].map(rel).join(' -> '));
      return;
    }
    state.set(file, 'visiting');
    for (const target of importsOf(file)) if (sources.has(target)) visit(target, [...path, file]);
    state.set(file, 'done');
  };
  for (const file of sources.keys()) visit(file, []);
  assert.deepEqual(cycles, []);
});

test('every exported declaration has a doc comment', () => {
  const missing: string[] = [];
  for (const [file, sf] of sources) {
    for (const stmt of sf.statements) {
      const exported = ts.canHaveModifiers(stmt) && ts.getModifiers(stmt)?.some((m) => m.kind === ts.SyntaxKind.ExportKeyword);
      if (!exported) continue;
      const docs = ts.getJSDocCommentsAndTags(ts.isVariableStatement(stmt) ? stmt.declarationList.declarations[0]! : stmt);
      if (docs.length > 0) continue;
      const name = ts.isVariableStatement(stmt) ? stmt.declarationList.declarations[0]!.name.getText(sf) : ((stmt as ts.DeclarationStatement).name?.getText(sf) ?? '?');
      missing.push(`${rel(file)}:${sf.getLineAndCharacterOfPosition(stmt.getStart(sf)).line + 1} ${name}`);
    }
  }
  assert.deepEqual(missing, []);
});

test(`no function is longer than ${MAX_FUNCTION_LINES} lines`, () => {
  const long: string[] = [];
  for (const [file, sf] of sources) {
    const walk = (node: ts.Node): void => {
      if (ts.isFunctionLike(node) && 'body' in node && node.body) {
        const first = sf.getLineAndCharacterOfPosition(node.getStart(sf)).line;
        const lines = sf.getLineAndCharacterOfPosition(node.getEnd()).line - first + 1;
        if (lines > MAX_FUNCTION_LINES) long.push(`${rel(file)}:${first + 1} (${lines} lines)`);
      }
      ts.forEachChild(node, walk);
    };
    walk(sf);
  }
  assert.deepEqual(long, []);
});
