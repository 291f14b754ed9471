// certgate is benchmarked as an operator runs it in production: built (`npm run build` bundles
// into dist/, which bin/certgate.js prefers). The bench must not create dist/ in the checkout (it
// would change what everyone else's `bin/certgate.js` runs), so it builds the same bundle into a
// directory under the OS temp dir, keyed by a hash of the sources, with a node_modules symlink
// so the packages loaded at run time (undici) resolve.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PROJECT_ROOT } from './services.ts';
import { buildBundle } from '../scripts/build.ts';
import { BENCH_TMP, log, now } from './util.ts';

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
  for (const f of ['package-lock.json', 'scripts/build.ts']) {
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
  const entry = join(dir, 'cli.js');
  if (existsSync(join(dir, '.done'))) return { entry, kind: 'compiled', ms: now() - started, note: 'cached build' };
  // Built beside it and renamed into place: two benches started at once (npm test runs the
  // bench's and the soak's smoke runs side by side) each build their own copy, and the second
  // rename finds the first one's finished build there and uses it.
  const building = `${dir}.building-${process.pid}`;
  try {
    rmSync(building, { recursive: true, force: true });
    await buildBundle(building);
    symlinkSync(join(PROJECT_ROOT, 'node_modules'), join(building, 'node_modules'), 'dir');
    writeFileSync(join(building, '.done'), '');
    try {
      renameSync(building, dir);
    } catch (err) {
      rmSync(building, { recursive: true, force: true });
      if (!existsSync(join(dir, '.done'))) throw err;
    }
  } catch (err) {
    rmSync(building, { recursive: true, force: true });
    log(`build failed, running certgate from sources (tsx): ${(err as Error).message.slice(0, 2000)}`);
    return { entry: tsxEntry, kind: 'tsx', ms: now() - started, note: 'build failed' };
  }
  // Keep the three newest builds.
  const old = readdirSync(BUILD_ROOT)
    .filter((name) => !name.includes('.building-'))
    .map((name) => ({ name, t: statSync(join(BUILD_ROOT, name)).mtimeMs }))
    .sort((a, b) => b.t - a.t)
    .slice(3);
  for (const o of old) rmSync(join(BUILD_ROOT, o.name), { recursive: true, force: true });
  log(`built certgate into ${dir} in ${Math.round(now() - started)} ms`);
  return { entry, kind: 'compiled', ms: now() - started };
}

export const TSX_ENTRY = join(PROJECT_ROOT, 'bin', 'certgate.js');
