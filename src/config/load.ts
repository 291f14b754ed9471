// Validates a config (src/config/schema.ts) and resolves relative paths against the file's
// directory. Errors name the key and say how to fix it.
import { isAbsolute, resolve } from 'node:path';
import type { z } from 'zod';
import { ConfigError } from './read.ts';
import { configSchema, type Config } from './schema.ts';

export { ConfigError };

/** A validated config, with the paths in it resolved against `baseDir`. */
export interface LoadedConfig extends Config {
  /** Directory relative paths were resolved against. */
  baseDir: string;
  /** The config file, when one was read. */
  file?: string;
}

/**
 * Validates a parsed config file (or object) against the schema and resolves relative paths
 * against `where.baseDir`. Throws ConfigError listing every problem, each naming its key.
 */
export function parseConfig(raw: unknown, where: { file?: string; baseDir: string }): LoadedConfig {
  const result = configSchema.safeParse(raw, { reportInput: true });
  if (!result.success) {
    const problems = result.error.issues.map(describeIssue);
    const header = where.file ? `invalid config in ${where.file}` : 'invalid config';
    throw new ConfigError(`${header}:\n${problems.map((p) => `  - ${p}`).join('\n')}`, where.file, problems);
  }
  const config = result.data;
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(where.baseDir, p));
  if (config.storage.file) config.storage.file.path = abs(config.storage.file.path);
  config.acme.trustedRoots = config.acme.trustedRoots.map(abs);
  for (const issuer of config.acme.issuers) issuer.trustedRoots = issuer.trustedRoots.map(abs);
  if (config.tls.fallback) config.tls.fallback = { cert: abs(config.tls.fallback.cert), key: abs(config.tls.fallback.key) };
  return { ...config, baseDir: where.baseDir, ...(where.file ? { file: where.file } : {}) };
}

function keyPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out === '' ? String(part) : `.${String(part)}`;
  }
  return out || '(top level)';
}

function describeIssue(issue: z.core.$ZodIssue): string {
  const at = keyPath(issue.path);
  switch (issue.code) {
    case 'unrecognized_keys':
      return issue.keys
        .map((k) => `${at === '(top level)' ? k : `${at}.${k}`}: unknown key; check its spelling against docs/config.md`)
        .join('\n  - ');
    case 'invalid_type':
      return `${at}: expected ${issue.expected}${issue.input === undefined ? ', but it is missing' : `, got ${describeValue(issue.input)}`}`;
    default:
      return `${at}: ${issue.message}`;
  }
}

function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return `${typeof v} ${JSON.stringify(v)}`;
}
