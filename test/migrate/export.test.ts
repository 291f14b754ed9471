// `certgate export --to DIR` (issue 18): every held certificate as PEM files per name, the key
// 0600, a wildcard under `_wildcard.<rest>`; and the round trip: the exported files, laid out
// as Caddy's storage, import back into an empty certgate storage with the same fingerprints.
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadCertificate, saveCertificate } from '../../src/issuance/store.ts';
import { caddyIssuerKey } from '../../src/migrate/caddy.ts';
import { runExport, runImport } from '../../src/migrate/command.ts';
import type { ImportSummary } from '../../src/migrate/import.ts';
import { parseConfig } from '../../src/config/load.ts';
import { caIdFromDirectory } from '../../src/storage/keys.ts';
import { FileStorage } from '../../src/storage/file/store.ts';
import { testCertificate, testKeys } from '../support/import-sources.ts';
import { tmpDir } from '../support/tmp.ts';

const DIRECTORY = 'https://acme.test:14000/dir';
const CA = caIdFromDirectory(DIRECTORY);

function configFor(path: string) {
  return parseConfig({ storage: { file: { path } }, acme: { directory: DIRECTORY }, log: { level: 'silent' } }, { baseDir: path });
}

function capture() {
  const out = { stdout: '', stderr: '' };
  return { out, io: { stdout: (t: string) => (out.stdout += t), stderr: (t: string) => (out.stderr += t) } };
}

test('export writes fullchain/cert/chain/privkey per name (key 0600, wildcard as _wildcard.); the files import back with the same fingerprints', async (t) => {
  const source = await tmpDir(t, 'certgate-export-src-');
  const storage = await FileStorage.open(source);
  const k = await testKeys();
  const expiry = new Date(Date.now() + 30 * 86_400_000);
  const held = new Map<string, string>();
  for (const name of ['a.export.test', '*.w.export.test']) {
    // A two-certificate chain, so cert.pem and chain.pem differ from fullchain.pem.
    const chain = (await testCertificate([name], k, expiry)) + (await testCertificate(['intermediate.export.test'], k, expiry));
    await saveCertificate(storage, { domain: name, ca: CA, directory: DIRECTORY, certPem: chain, keyPem: k.keyPem, keyType: 'ecdsa-p256' });
    held.set(name, chain);
  }
  await storage.close();

  const to = await tmpDir(t, 'certgate-export-to-');
  const exported = capture();
  assert.equal(await runExport(configFor(source), to, true, exported.io), 0, exported.out.stderr);
  assert.equal((JSON.parse(exported.out.stdout) as { exported: number }).exported, 2);
  for (const [name, chain] of held) {
    const folder = join(to, name.startsWith('*.') ? `_wildcard.${name.slice(2)}` : name);
    const full = await readFile(join(folder, 'fullchain.pem'), 'utf8');
    assert.equal(full, chain);
    assert.equal((await readFile(join(folder, 'cert.pem'), 'utf8')) + (await readFile(join(folder, 'chain.pem'), 'utf8')), chain);
    assert.equal((await stat(join(folder, 'privkey.pem'))).mode & 0o777, 0o600, 'private key 0600');
    assert.ok(new X509Certificate(await readFile(join(folder, 'cert.pem'))).checkPrivateKey(createPrivateKey(await readFile(join(folder, 'privkey.pem')))));
  }

  // Round trip: the exported files as CertMagic lays them out, imported into an empty storage.
  const caddyRoot = await tmpDir(t, 'certgate-export-caddy-');
  for (const name of held.keys()) {
    const safe = name.replace('*', 'wildcard_');
    const folder = join(caddyRoot, 'certificates', caddyIssuerKey(DIRECTORY), safe);
    const from = join(to, name.startsWith('*.') ? `_wildcard.${name.slice(2)}` : name);
    await mkdir(folder, { recursive: true });
    await writeFile(join(folder, `${safe}.crt`), await readFile(join(from, 'fullchain.pem')));
    await writeFile(join(folder, `${safe}.key`), await readFile(join(from, 'privkey.pem')));
  }
  const target = await tmpDir(t, 'certgate-export-target-');
  const imported = capture();
  assert.equal(await runImport(configFor(target), { kind: 'caddy', from: caddyRoot }, { json: true }, imported.io), 0, imported.out.stderr);
  assert.equal((JSON.parse(imported.out.stdout) as ImportSummary).imported, 2);
  const back = await FileStorage.open(target);
  for (const [name, chain] of held) assert.equal((await loadCertificate(back, [CA], name))?.certPem, chain, `${name} round trip`);
  await back.close();
});
