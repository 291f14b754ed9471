// Issue 18 acceptance (move in from lua-resty-auto-ssl): `<prefix>:<domain>:latest` JSON values,
// as its storage.lua and Redis adapter write them, in a real redis-server → `certgate import
// auto-ssl` into a gateway's Redis storage while the gateway runs → served with the same
// fingerprints and 0 orders at Pebble. --dry-run writes nothing; a second run imports 0; a
// certificate certgate holds that expires later is kept; a mismatched key, an expired
// certificate, unparsable PEM and a name that is not a host name are skipped and named.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { parseConfig } from '../../src/config/load.ts';
import { saveCertificate } from '../../src/issuance/store.ts';
import { runImport } from '../../src/migrate/command.ts';
import type { ImportSummary } from '../../src/migrate/import.ts';
import { keys } from '../../src/storage/keys.ts';
import { peerCertificate } from '../support/clients.ts';
import { fallbackFingerprint, startTestGateway, type TestGateway } from '../support/gateway.ts';
import { autoSslValue, testCertificate, testKeys, writeRedisKeys } from '../support/import-sources.ts';
import { startPebbleOnFreePorts, type PebbleHandle } from '../support/pebble.ts';
import { CERTGATE_BIN, runToEnd } from '../support/process.ts';
import { startRedis, type RedisHandle } from '../support/redis.ts';

const DAY = 86_400_000;
const GOOD = ['a.autossl.test', 'b.autossl.test', 'c.autossl.test'];

let pebble: PebbleHandle;
let redis: RedisHandle;
let gw: TestGateway;
let dir: string;
let configFile: string;
const fingerprints = new Map<string, string>();

before(async () => {
  let httpsPort: number;
  let httpPort: number;
  ({ pebble, httpsPort, httpPort } = await startPebbleOnFreePorts());
  redis = await startRedis();
  dir = await mkdtemp(join(tmpdir(), 'certgate-import-autossl-'));
  // No onDemand.allow: a name certgate has no certificate for gets the fallback, never an order.
  gw = await startTestGateway({ pebble, httpsPort, httpPort, redis: { url: redis.url, prefix: 'cg:' } });
  const config = {
    storage: { redis: { url: redis.url, prefix: 'cg:' } },
    acme: { directory: pebble.directoryUrl, trustedRoots: [pebble.listenerCaPath] },
    log: { level: 'warn' },
  };
  configFile = join(dir, 'certgate.json');
  await writeFile(configFile, JSON.stringify(config));

  const k = await testKeys();
  const other = await testKeys();
  const in30 = new Date(Date.now() + 30 * DAY);
  const entries: Array<[string, string]> = [];
  for (const name of GOOD) {
    const pem = await testCertificate([name], k, in30);
    fingerprints.set(name, new X509Certificate(pem).fingerprint256);
    entries.push([`autossl:${name}:latest`, autoSslValue(pem, k.keyPem, in30)]);
  }
  entries.push(['autossl:mismatch.autossl.test:latest', autoSslValue(await testCertificate(['mismatch.autossl.test'], k, in30), other.keyPem, in30)]);
  entries.push(['autossl:old.autossl.test:latest', autoSslValue(await testCertificate(['old.autossl.test'], k, new Date(Date.now() - DAY), new Date(Date.now() - 90 * DAY)), k.keyPem, new Date(Date.now() - DAY))]);
  entries.push(['autossl:junk.autossl.test:latest', autoSslValue('-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n', k.keyPem, in30)]);
  entries.push(['autossl:not_a host:latest', autoSslValue(await testCertificate(['x.autossl.test'], k, in30), k.keyPem, in30)]);
  entries.push(['autossl:kept.autossl.test:latest', autoSslValue(await testCertificate(['kept.autossl.test'], k, in30), k.keyPem, in30)]);
  // Without auto-ssl's prefix, or another of its keys: not ours to read.
  entries.push([`unprefixed.autossl.test:latest`, autoSslValue(await testCertificate(['unprefixed.autossl.test'], k, in30), k.keyPem, in30)]);
  entries.push([`autossl:a.autossl.test:challenge:tok`, 'x']);
  await writeRedisKeys(redis.url, entries);
  // certgate already holds kept.autossl.test, expiring after the one auto-ssl has.
  const held = await testCertificate(['kept.autossl.test'], k, new Date(Date.now() + 60 * DAY));
  fingerprints.set('kept.autossl.test', new X509Certificate(held).fingerprint256);
  await saveCertificate(gw.storage.inner, { domain: 'kept.autossl.test', ca: gw.gateway.issuer.ca, directory: pebble.directoryUrl, certPem: held, keyPem: k.keyPem, keyType: 'ecdsa-p256' });
});

after(async () => {
  await gw?.close();
  await redis?.dispose();
  await pebble?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function importJson(dryRun: boolean): Promise<ImportSummary> {
  const config = parseConfig({ storage: { redis: { url: redis.url, prefix: 'cg:' } }, acme: { directory: pebble.directoryUrl } }, { baseDir: dir });
  let stdout = '';
  let stderr = '';
  const code = await runImport(config, { kind: 'auto-ssl', redis: redis.url, prefix: 'autossl' }, { dryRun, json: true }, { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t) });
  assert.equal(code, 0, stderr);
  return JSON.parse(stdout) as ImportSummary;
}

test('--dry-run reports what would be imported and writes nothing', async () => {
  const summary = await importJson(true);
  assert.equal(summary.dryRun, true);
  assert.equal(summary.imported, 3);
  for (const name of GOOD) assert.equal(await gw.storage.inner.get(keys.certificate(gw.gateway.issuer.ca, name)), null, `${name} not written`);
  assert.deepEqual(await gw.storage.inner.list('index/renewal/').then((k) => k.filter((x) => x.includes('autossl.test') && !x.endsWith('kept.autossl.test'))), []);
});

test('import → served with the same fingerprints, 0 orders; the rest skipped and named; a newer held certificate kept', async () => {
  const fallback = await fallbackFingerprint(gw);
  // Asked before the import: the gateway has nothing for it (and orders nothing).
  assert.equal((await peerCertificate(gw.gateway.httpsPort, GOOD[0])).fingerprint256, fallback);

  const { code, output } = await runToEnd([CERTGATE_BIN, 'import', 'auto-ssl', '--redis', redis.url, '--prefix', 'autossl', '--config', configFile], { timeoutMs: 60_000 });
  assert.equal(code, 0, output);
  assert.match(output, /8 read, 3 imported, 5 skipped/);
  assert.match(output, /skipped mismatch\.autossl\.test \(key-mismatch\)/);
  assert.match(output, /skipped old\.autossl\.test \(expired\)/);
  assert.match(output, /skipped junk\.autossl\.test \(unparsable-pem\)/);
  assert.match(output, /skipped not_a host \(invalid-name\)/);
  assert.match(output, /skipped kept\.autossl\.test \(newer-held\)/);
  assert.doesNotMatch(output, /unprefixed/);

  for (const name of [...GOOD, 'kept.autossl.test']) {
    assert.equal((await peerCertificate(gw.gateway.httpsPort, name)).fingerprint256, fingerprints.get(name), `${name} served as imported (or kept)`);
  }
  for (const name of ['mismatch.autossl.test', 'old.autossl.test']) assert.equal((await peerCertificate(gw.gateway.httpsPort, name)).fingerprint256, fallback);
  assert.equal(pebble.ordersPlaced(), 0, 'no order placed');
  // In the renewal index, so the maintainer renews them.
  const indexed = await gw.storage.inner.list('index/renewal/');
  for (const name of GOOD) assert.ok(indexed.some((k) => k.endsWith(`/${name}`)), `${name} in the renewal index`);
});

test('a second run imports 0 (already held)', async () => {
  const summary = await importJson(false);
  assert.equal(summary.imported, 0);
  assert.equal(summary.skipped['already-held'], 3);
  assert.equal(summary.skipped['newer-held'], 1);
  assert.equal(summary.skipped['key-mismatch'], 1);
  assert.ok(summary.skippedEntries.some((e) => e.name === 'mismatch.autossl.test' && e.reason === 'key-mismatch' && e.source === 'autossl:mismatch.autossl.test:latest'));
  assert.equal(pebble.ordersPlaced(), 0);
});
