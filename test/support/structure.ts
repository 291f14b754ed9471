// Reads src/ folders with the TypeScript parser for the structure tests (layering, cycles, doc
// comments, function length): shared by test/acme/structure.test.ts and test/issuance/structure.test.ts.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

/** The repository root. */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** A file's path relative to the repository root, for assertion messages. */
export const rel = (file: string): string => relative(ROOT, file);

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? filesUnder(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

/** Every .ts file under `dirs` (absolute), parsed. */
export function parseSources(dirs: string[]): Map<string, ts.SourceFile> {
  const sources = new Map<string, ts.SourceFile>();
  for (const dir of dirs) for (const file of filesUnder(dir)) sources.set(file, ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true));
  return sources;
}

/** Relative imports (static, type-only and re-exports) of a file, resolved to absolute paths. */
export function importsOf(sf: ts.SourceFile): string[] {
  const out: string[] = [];
  for (const stmt of sf.statements) {
    const spec = (ts.isImportDeclaration(stmt) || ts.isExportDeclaration(stmt)) && stmt.moduleSpecifier && ts.isStringLiteral(stmt.moduleSpecifier) ? stmt.moduleSpecifier.text : undefined;
    if (spec?.startsWith('.')) out.push(resolve(dirname(sf.fileName), spec));
  }
  return out;
}

/** Import cycles among `sources` (type-only imports count), one line each. */
export function importCycles(sources: Map<string, ts.SourceFile>): string[] {
  const cycles: string[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (file: string, path: string[]): void => {
    if (state.get(file) === 'done') return;
    if (state.get(file) === 'visiting') {
      cycles.push([...path.slice(path.indexOf(file)), file].map(rel).join(' -> '));
      return;
    }
    state.set(file, 'visiting');
    for (const target of importsOf(sources.get(file)!)) if (sources.has(target)) visit(target, [...path, file]);
    state.set(file, 'done');
  };
  for (const file of sources.keys()) visit(file, []);
  return cycles;
}

/** Exported declarations without a doc comment, as `file:line name`. */
export function undocumentedExports(sources: Map<string, ts.SourceFile>): string[] {
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
  return missing;
}

/** Functions longer than `max` lines, as `file:line (n lines)`. */
export function longFunctions(sources: Map<string, ts.SourceFile>, max: number): string[] {
  const long: string[] = [];
  for (const [file, sf] of sources) {
    const walk = (node: ts.Node): void => {
      if (ts.isFunctionLike(node) && 'body' in node && node.body) {
        const first = sf.getLineAndCharacterOfPosition(node.getStart(sf)).line;
        const lines = sf.getLineAndCharacterOfPosition(node.getEnd()).line - first + 1;
        if (lines > max) long.push(`${rel(file)}:${first + 1} (${lines} lines)`);
      }
      ts.forEachChild(node, walk);
    };
    walk(sf);
  }
  return long;
}
