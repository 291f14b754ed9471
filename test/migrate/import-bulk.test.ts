// Issue 18: "100,000 entries in minutes, not hours". lua-resty-auto-ssl entries in a real
// redis-server imported into Redis storage (the cluster setup), the rate printed (no timed
// assertion: a loaded 2-core machine decides the figure, not the test). `npm test` runs 10,000
// (the suite shares the machine); CERTGATE_IMPORT_ENTRIES=100000 runs the full figure.
// Certificates are cheap to make here: each certificate lists 100 names and serves as the entry
// of each, all with one key pair (the import checks the entry's name is on its certificate, and
// the key matches).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { importCertificates, type SourceEntry } from '../../src/migrate/import.ts';
import { readAutoSsl } from '../../src/migrate/auto-ssl.ts';
import { keys } from '../../src/storage/keys.ts';
import { RedisStorage } from '../../src/storage/redis/store.ts';
import { silentLogger } from '../../src/util/log.ts';
import { autoSslValue, testCertificate, testKeys, writeRedisKeys } from '../support/import-sources.ts';
import { startRedis, type RedisHandle } from '../support/redis.ts';

const ENTRIES = Number(process.env.CERTGATE_IMPORT_ENTRIES ?? 10_000);
const NAMES_PER_CERT = 100;
const ISSUER = { ca: 'acme.test-dir', directory: 'https://acme.test/dir' };

let redis: RedisHandle;

before(async () => {
  redis = await startRedis();
});
after(async () => {
  await redis?.dispose();
});

test(`${ENTRIES} auto-ssl entries import in minutes (rate printed)`, { timeout: Math.max(180_000, ENTRIES * 10) }, async () => {
  const k = await testKeys();
  const expiry = new Date(Date.now() + 30 * 86_400_000);
  const values: Array<[string, string]> = [];
  for (let c = 0; c < ENTRIES / NAMES_PER_CERT; c++) {
    const names = Array.from({ length: NAMES_PER_CERT }, (_, i) => `n${c * NAMES_PER_CERT + i}.bulk.test`);
    const value = autoSslValue(await testCertificate(names, k, expiry), k.keyPem, expiry);
    for (const name of names) values.push([`bulk:${name}:latest`, value]);
  }
  await writeRedisKeys(redis.url, values);
  values.length = 0;

  const storage = await RedisStorage.connect({ url: redis.url, prefix: 'cg:', logger: silentLogger() });
  try {
    const entries: AsyncIterable<SourceEntry> = readAutoSsl({ url: redis.url, prefix: 'bulk', issuer: ISSUER });
    const progress: number[] = [];
    const summary = await importCertificates(entries, {
      storage,
      bus: storage,
      cas: [ISSUER.ca],
      logger: silentLogger(),
      concurrency: 32,
      onProgress: (p) => progress.push(p.read),
      progressEvery: { entries: 1_000, ms: 3_600_000 },
    });
    const rate = Math.round((summary.read * 1000) / summary.elapsedMs);
    process.stdout.write(`# import auto-ssl: ${summary.read} entries, ${summary.imported} imported in ${(summary.elapsedMs / 1000).toFixed(1)} s (${rate} entries/s)\n`);
    assert.equal(summary.read, ENTRIES);
    assert.equal(summary.imported, ENTRIES, JSON.stringify(summary.skippedEntries.slice(0, 5)));
    assert.ok(progress.length >= Math.floor(ENTRIES / 1_000) - 1, `a progress report every 1,000 entries (${progress.length})`);
    assert.ok(await storage.get(keys.certificate(ISSUER.ca, `n${ENTRIES - 1}.bulk.test`)));
  } finally {
    await storage.close();
  }
});
