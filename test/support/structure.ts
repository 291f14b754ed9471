// Reading the shape of src/ with the TypeScript parser, for the structure tests (issue 14):
// relative imports, import cycles (type-only imports count: they are cycles to a reader too),
// exported declarations without a doc comment, and functions longer than a limit.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

/** The repository root. */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** Parsed sources by absolute path. */
export type Sources = Map<string, ts.SourceFile>;

/** A path relative to the repository root, for messages. */
export const rel = (file: string): string => relative(ROOT, file);

function filesUnder(path: string): string[] {
  if (!statSync(path).isDirectory()) return path.endsWith('.ts') ? [path] : [];
  return readdirSync(path, { withFileTypes: true }).flatMap((e) => filesUnder(join(path, e.name)));
}

/** Every .ts file under these paths (folders or files, relative to the root), parsed. */
export function parseSources(paths: string[]): Sources {
  const files = paths.flatMap((p) => filesUnder(join(ROOT, p)));
  return new Map(files.map((file) => [file, ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true)]));
}

/** Relative imports (static, type-only and re-exports) of a file, resolved to absolute paths. */
export function importsOf(sources: Sources, file: string): string[] {
  const out: string[] = [];
  for (const stmt of sources.get(file)!.statements) {
    const spec = (ts.isImportDeclaration(stmt) || ts.isExportDeclaration(stmt)) && stmt.moduleSpecifier && ts.isStringLiteral(stmt.moduleSpecifier) ? stmt.moduleSpecifier.text : undefined;
    if (spec?.startsWith('.')) out.push(resolve(dirname(file), spec));
  }
  return out;
}

/** Import cycles among `sources`, each as "a -> b -> a". */
export function importCycles(sources: Sources): string[] {
  const cycles: string[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (file: string, path: string[]): void => {
    if (state.get(file) === 'done') return;
    if (state.get(file) === 'visiting') {
      cycles.push([...path.slice(path.indexOf(file)), file].map(rel).join(' -> '));
      return;
    }
    state.set(file, 'visiting');
    for (const target of importsOf(sources, file)) if (sources.has(target)) visit(target, [...path, file]);
    state.set(file, 'done');
  };
  for (const file of sources.keys()) visit(file, []);
  return cycles;
}

/** Exported declarations with no doc comment above them, as "file:line name". */
export function undocumentedExports(sources: Sources): string[] {
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

/** A function whose body only returns an object literal: data, not logic. */
function returnsDataLiteral(node: ts.SignatureDeclaration & { body?: ts.Node }): boolean {
  const body = node.body;
  if (!body) return false;
  if (ts.isObjectLiteralExpression(body) || (ts.isParenthesizedExpression(body) && ts.isObjectLiteralExpression(body.expression))) return true;
  if (!ts.isBlock(body) || body.statements.length !== 1) return false;
  const only = body.statements[0]!;
  return ts.isReturnStatement(only) && only.expression !== undefined && ts.isObjectLiteralExpression(only.expression);
}

/** Functions (any kind, nested too) longer than `max` lines, as "file:line (n lines)"; data literals excepted. */
export function longFunctions(sources: Sources, max: number): string[] {
  const long: string[] = [];
  for (const [file, sf] of sources) {
    const walk = (node: ts.Node): void => {
      if (ts.isFunctionLike(node) && 'body' in node && node.body) {
        const first = sf.getLineAndCharacterOfPosition(node.getStart(sf)).line;
        const lines = sf.getLineAndCharacterOfPosition(node.getEnd()).line - first + 1;
        if (lines > max && !returnsDataLiteral(node)) long.push(`${rel(file)}:${first + 1} (${lines} lines)`);
      }
      ts.forEachChild(node, walk);
    };
    walk(sf);
  }
  return long;
}
