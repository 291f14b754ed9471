// certgate is benchmarked as an operator runs it in production: compiled (`npm run build` makes
// dist/, which bin/certgate.js prefers). The bench must not create dist/ in the checkout (it
// would change what everyone else's `bin/certgate.js` runs), so it compiles src/ into a
// directory under the OS temp dir, keyed by a hash of the sources, with a node_modules symlink
// so the compiled files resolve their packages.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PROJECT_ROOT } from './services.ts';
import { BENCH_TMP, log, now, run } from './util.ts';

const BUILD_ROOT = join(BENCH_TMP, 'certgate-bench-build');

function sourceHash(): string {
  const h = createHash('sha256');
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = join(dir, entry.name);
      if (entry.isDirectory()) walk(p);
      else if (entry.name.endsWith('.ts')) h.update(p).update(readFileSync(p));
    }
  };
  walk(join(PROJECT_ROOT, 'src'));
  for (const f of ['package-lock.json', 'tsconfig.json', 'bench/tsconfig.build.json']) {
    const p = join(PROJECT_ROOT, f);
    if (existsSync(p)) h.update(f).update(readFileSync(p));
  }
  return h.digest('hex').slice(0, 16);
}

export interface CertgateBuild {
  /** Script to run with `node <entry> run --config ...`. */
  entry: string;
  kind: 'compiled' | 'tsx';
  ms: number;
  note?: string;
}

export async function buildCertgate(): Promise<CertgateBuild> {
  const started = now();
  const tsxEntry = join(PROJECT_ROOT, 'bin', 'certgate.js');
  const dir = join(BUILD_ROOT, sourceHash());
  const entry = join(dir, 'src', 'cli.js');
  if (existsSync(join(dir, '.done'))) return { entry, kind: 'compiled', ms: now() - started, note: 'cached build' };
  rmSync(dir, { recursive: true, force: true });
  const tsc = join(PROJECT_ROOT, 'node_modules', '.bin', 'tsc');
  const r = await run(process.execPath, [tsc, '-p', join(PROJECT_ROOT, 'bench', 'tsconfig.build.json'), '--outDir', dir], { timeoutMs: 180_000, cwd: PROJECT_ROOT });
  if (!existsSync(entry)) {
    log(`build failed, running certgate from sources (tsx): ${(r.stdout + r.stderr).slice(0, 2000)}`);
    return { entry: tsxEntry, kind: 'tsx', ms: now() - started, note: 'tsc emitted nothing' };
  }
  // tsc emits even with type errors (someone may be mid-edit); say so, run the output anyway.
  const note = r.code === 0 ? undefined : `tsc reported errors (output used anyway): ${(r.stdout + r.stderr).split('\n').slice(0, 5).join(' | ')}`;
  if (note) log(note);
  symlinkSync(join(PROJECT_ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir');
  writeFileSync(join(dir, '.done'), '');
  // Keep the three newest builds.
  const old = readdirSync(BUILD_ROOT)
    .map((name) => ({ name, t: statSync(join(BUILD_ROOT, name)).mtimeMs }))
    .sort((a, b) => b.t - a.t)
    .slice(3);
  for (const o of old) rmSync(join(BUILD_ROOT, o.name), { recursive: true, force: true });
  log(`compiled certgate into ${dir} in ${Math.round(now() - started)} ms`);
  return { entry, kind: 'compiled', ms: now() - started, ...(note ? { note } : {}) };
}

export const TSX_ENTRY = join(PROJECT_ROOT, 'bin', 'certgate.js');
