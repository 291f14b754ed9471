// RSS that one process's certificate cache adds after N distinct names were each served once
// (what the cold walk does to a worker), with the bench's seeded chain (leaf + CA, ECDSA P-256).
// Not affected much by machine load, unlike throughput.
//   node --expose-gc --max-semi-space-size=16 --import tsx bench/cache-memory.ts [names=20000] [tls.contextCacheSize=1000] [tls.cacheSize=10000]
// (the flags as certgate runs: GC before each reading, the young generation capped as in src/cluster/young-generation.ts)
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import { createSelfSignedCertificate } from '../src/acme/x509.ts';
import { CertificateCache } from '../src/tls/cache.ts';
import { BENCH_TMP } from './util.ts';

const [names = 20_000, contexts = 1000, cacheSize = 10_000] = process.argv.slice(2).map(Number);
const seeded = join(BENCH_TMP, 'certgate-bench-cache', 'v1');
const pair = existsSync(join(seeded, 'localhost.crt'))
  ? { certPem: readFileSync(join(seeded, 'localhost.crt'), 'utf8'), keyPem: readFileSync(join(seeded, 'localhost.key'), 'utf8') }
  : await createSelfSignedCertificate('localhost');
const leaf = new X509Certificate(pair.certPem);
const cache = new CertificateCache(cacheSize, contexts);
const gc = (globalThis as { gc?: () => void }).gc;
gc?.();
const m0 = process.memoryUsage();
const before = m0.rss;
/** The bench's row (a) reads memory here and at the end: RSS per extra cached name in between. */
const MARK = 1000;
let atMark: number | undefined;
async function settledRss(): Promise<number> {
  await sleep(1000); // retired contexts are closed after a grace period
  gc?.();
  return process.memoryUsage().rss;
}
for (let i = 0; i < names; i++) {
  // Fresh strings per name, as a storage load makes them.
  const entry = cache.add({ domain: `n${i}.bench.test`, ca: 'bench', certPem: `${pair.certPem} `.trimEnd(), keyPem: `${pair.keyPem} `.trimEnd(), notBefore: leaf.validFromDate, notAfter: leaf.validToDate, fingerprint256: leaf.fingerprint256 });
  void entry.context;
  if (i % 100 === 0) await nextTurn(); // let timers run, as a serving process would
  if (i + 1 === MARK && names > MARK) atMark = await settledRss();
}
await settledRss();
const m1 = process.memoryUsage();
const added = m1.rss - before;
const mib = (k: 'heapUsed' | 'heapTotal' | 'external'): string => ((m1[k] - m0[k]) / 2 ** 20).toFixed(1);
console.log(
  `${names} names served once, tls.cacheSize ${cacheSize}, tls.contextCacheSize ${contexts}: ${cache.size} cached, ${cache.contexts} live contexts, ` +
    `RSS +${(added / 2 ** 20).toFixed(0)} MiB (${(added / Math.min(names, cacheSize) / 1024).toFixed(1)} KiB per cached name); V8 heap used +${mib('heapUsed')} MiB (total +${mib('heapTotal')}), external +${mib('external')} MiB${gc ? '' : ' (run with --expose-gc for steadier figures)'}`,
);
if (atMark !== undefined) {
  const extra = Math.min(names, cacheSize) - MARK;
  console.log(`slope ${MARK} → ${names} names served: RSS +${((m1.rss - atMark) / 2 ** 20).toFixed(0)} MiB for ${extra} more cached, ${((m1.rss - atMark) / extra / 1024).toFixed(1)} KiB per extra cached name`);
}
