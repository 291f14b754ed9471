#!/usr/bin/env node
// Launcher: the build when present (`npm run build` bundles into dist/), else the TypeScript
// sources via tsx.
// A build older than the sources next to it is not used: a checkout whose dist/ was left behind
// would otherwise run yesterday's code (and its tests would test it).
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const compiled = join(root, 'dist', 'cli.js');

/** The newest modification time among the files under `dir` whose names end in `ext`. */
function newest(dir, ext) {
  let latest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    latest = Math.max(latest, entry.isDirectory() ? newest(path, ext) : entry.name.endsWith(ext) ? statSync(path).mtimeMs : 0);
  }
  return latest;
}

const sources = join(root, 'src');
let useCompiled = existsSync(compiled);
if (useCompiled && existsSync(sources) && newest(sources, '.ts') > statSync(compiled).mtimeMs) {
  process.stderr.write('certgate: dist/ is older than src/ (run `npm run build`); running the sources\n');
  useCompiled = false;
}
if (useCompiled) {
  await import(compiled);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../src/cli.ts');
}
