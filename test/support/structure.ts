// Reading the shape of src/ with the TypeScript parser, for the structure tests (issue 14):
// which files import which (type-only and dynamic imports count: they are dependencies to a
// reader too), import cycles, exported declarations without a doc comment, functions longer
// than a bound. Reads files only; runs none of them.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

/** The project root (the folder holding src/ and test/). */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** A path relative to the project root, for messages. */
export const rel = (file: string): string => relative(ROOT, file);

/** Parsed sources by absolute path. */
export type Sources = Map<string, ts.SourceFile>;

function filesUnder(path: string): string[] {
  if (!statSync(path).isDirectory()) return path.endsWith('.ts') ? [path] : [];
  return readdirSync(path, { withFileTypes: true }).flatMap((e) => filesUnder(join(path, e.name)));
}

/** Every .ts file under these paths (folders or files; absolute, or relative to the root), parsed. */
export function parseSources(paths: string[]): Sources {
  const files = paths.flatMap((p) => filesUnder(resolve(ROOT, p)));
  return new Map(files.map((file) => [file, ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true)]));
}

/**
 * Relative imports of a file (static, dynamic `import()`, type-only and re-exports), resolved to
 * absolute paths. Type-only imports count: a cycle through types is still a cycle to a reader.
 */
export function importsOf(sf: ts.SourceFile): string[] {
  const out: string[] = [];
  const walk = (node: ts.Node): void => {
    const spec =
      (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)
        ? node.moduleSpecifier.text
        : ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword && node.arguments[0] && ts.isStringLiteral(node.arguments[0])
          ? node.arguments[0].text
          : undefined;
    if (spec?.startsWith('.')) out.push(resolve(dirname(sf.fileName), spec));
    ts.forEachChild(node, walk);
  };
  walk(sf);
  return out;
}

/** Import cycles among `sources`, each as "a.ts -> b.ts -> a.ts" (empty when there are none). */
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
    for (const target of importsOf(sources.get(file)!)) if (sources.has(target)) visit(target, [...path, file]);
    state.set(file, 'done');
  };
  for (const file of sources.keys()) visit(file, []);
  return cycles;
}

/**
 * Exported top-level declarations with no doc comment above them, as "file:line name". With
 * `members`, also the public members of exported classes and interfaces, where a class member
 * that implements a documented interface member of these sources (Storage.get) inherits its doc.
 */
export function undocumentedExports(sources: Sources, opts: { members?: boolean } = {}): string[] {
  const missing: string[] = [];
  const interfaceMembers = new Map<string, Set<string>>();
  for (const sf of sources.values()) {
    for (const stmt of sf.statements) {
      if (ts.isInterfaceDeclaration(stmt)) interfaceMembers.set(stmt.name.text, new Set(stmt.members.flatMap((m) => (m.name ? [m.name.getText(sf)] : []))));
    }
  }
  const where = (sf: ts.SourceFile, node: ts.Node, name: string): string => `${rel(sf.fileName)}:${sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1} ${name}`;
  for (const sf of sources.values()) {
    for (const stmt of sf.statements) {
      const exported = ts.canHaveModifiers(stmt) && ts.getModifiers(stmt)?.some((m) => m.kind === ts.SyntaxKind.ExportKeyword);
      if (!exported) continue;
      const decl = ts.isVariableStatement(stmt) ? stmt.declarationList.declarations[0]! : stmt;
      const name = ts.isVariableStatement(stmt) ? stmt.declarationList.declarations[0]!.name.getText(sf) : ((stmt as ts.DeclarationStatement).name?.getText(sf) ?? '?');
      if (ts.getJSDocCommentsAndTags(decl).length === 0) missing.push(where(sf, stmt, name));
      if (!opts.members || (!ts.isClassDeclaration(stmt) && !ts.isInterfaceDeclaration(stmt))) continue;
      const implemented = (stmt.heritageClauses ?? []).flatMap((clause) => clause.types.map((t) => t.expression.getText(sf)));
      for (const member of stmt.members) {
        const hidden = ts.canHaveModifiers(member) && ts.getModifiers(member)?.some((m) => m.kind === ts.SyntaxKind.PrivateKeyword);
        if (hidden || ts.isConstructorDeclaration(member) || !member.name || ts.isPrivateIdentifier(member.name)) continue;
        if (implemented.some((i) => interfaceMembers.get(i)?.has(member.name!.getText(sf)))) continue;
        if (ts.getJSDocCommentsAndTags(member).length === 0) missing.push(where(sf, member, `${name}.${member.name.getText(sf)}`));
      }
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

/** Functions (any kind, nested too) longer than `maxLines`, as "file:line (N lines)"; data literals excepted. */
export function longFunctions(sources: Sources, maxLines: number): string[] {
  const long: string[] = [];
  for (const [file, sf] of sources) {
    const walk = (node: ts.Node): void => {
      if (ts.isFunctionLike(node) && 'body' in node && node.body) {
        const first = sf.getLineAndCharacterOfPosition(node.getStart(sf)).line;
        const lines = sf.getLineAndCharacterOfPosition(node.getEnd()).line - first + 1;
        if (lines > maxLines && !returnsDataLiteral(node)) long.push(`${rel(file)}:${first + 1} (${lines} lines)`);
      }
      ts.forEachChild(node, walk);
    };
    walk(sf);
  }
  return long;
}
