// `npm run build`: bundles src/cli.ts and the packages it imports into dist/ with esbuild (ES
// modules, split at every dynamic import so lazily loaded parts stay lazy). Start-up is mostly
// Node's per-module loading work (resolving, reading, linking each file): the sources are ~100
// modules and zod alone ~90, so one process loads a few dozen files instead of several hundred
// (cold start with workers ~0.92 → ~0.73 s on a 2-core machine). Type checking is `npm run lint`.
// The dashboard (src/ui/, browser code) is bundled too, into outDir/ui/, where the admin API
// finds it (src/admin/ui-assets.ts): a built gateway needs no esbuild at run time.
// Usage: node --import tsx scripts/build.ts [outDir]   (default dist/)
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/**
 * Builds the gateway into `outDir` (emptied first); `outDir/cli.js` is the entry point. Packages
 * that a module loads with a runtime `require` (undici, see src/util/undici.ts) are resolved from
 * `outDir` upwards at run time, so a node_modules must be reachable from there.
 */
export async function buildBundle(outDir = join(root, 'dist')): Promise<{ outDir: string; entry: string; ms: number }> {
  const { build } = await import('esbuild');
  rmSync(outDir, { recursive: true, force: true });
  const started = performance.now();
  await build({
    absWorkingDir: root,
    entryPoints: { cli: 'src/cli.ts' },
    outdir: outDir,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node24',
    sourcemap: 'linked',
    logLevel: 'warning',
    // Only loaded (by src/admin/ui-assets.ts) to bundle the dashboard when outDir/ui/ is missing.
    external: ['esbuild'],
    // CommonJS packages bundled into ES modules call require() for Node's built-ins.
    banner: { js: "import { createRequire as __certgateCreateRequire } from 'node:module'; const require = __certgateCreateRequire(import.meta.url);" },
  });
  const { bundleUi } = await import('../src/admin/ui-assets.ts');
  mkdirSync(join(outDir, 'ui'));
  for (const [name, body] of await bundleUi()) writeFileSync(join(outDir, 'ui', name), body);
  return { outDir, entry: join(outDir, 'cli.js'), ms: performance.now() - started };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { entry, ms } = await buildBundle(process.argv[2] ? resolve(process.argv[2]) : undefined);
  process.stdout.write(`built ${entry} in ${Math.round(ms)} ms\n`);
}
