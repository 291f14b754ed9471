// The import core and the Caddy reader (issue 18) on file storage: CertMagic's names and issuer
// keys, its `ED25519 PRIVATE KEY` label, a folder of an issuer certgate is not configured for,
// a certificate that does not name its entry, --bind, and the bounded stream the core runs on.
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { parseConfig } from '../../src/config/load.ts';
import { caddyIssuerKey, nameOfCaddyFolder } from '../../src/migrate/caddy.ts';
import { runImport } from '../../src/migrate/command.ts';
import type { ImportSummary } from '../../src/migrate/import.ts';
import { forEachOfStream } from '../../src/migrate/stream.ts';
import { FileStorage } from '../../src/storage/file/store.ts';
import { caIdFromDirectory, keys } from '../../src/storage/keys.ts';
import { testCertificate, testKeys } from '../support/import-sources.ts';
import { tmpDir } from '../support/tmp.ts';

const DIRECTORY = 'https://acme-v02.api.letsencrypt.org/directory';

test("caddyIssuerKey is CertMagic's: host (with port), path with '-', storage-safe", () => {
  assert.equal(caddyIssuerKey(DIRECTORY), 'acme-v02.api.letsencrypt.org-directory');
  assert.equal(caddyIssuerKey('https://127.0.0.1:14000/dir'), '127.0.0.1-14000-dir');
  assert.equal(caddyIssuerKey('https://acme.zerossl.com/v2/DV90'), 'acme.zerossl.com-v2-dv90');
  assert.equal(nameOfCaddyFolder('wildcard_.example.com'), '*.example.com');
});

test('caddy import: Ed25519 key under CertMagic\'s label imported; foreign issuer, name not on the certificate skipped and named; --bind binds', async (t) => {
  const root = await tmpDir(t, 'certgate-caddy-src-');
  const expiry = new Date(Date.now() + 30 * 86_400_000);
  const site = async (issuerKey: string, folder: string, crt: string, key: string) => {
    const dir = join(root, 'certificates', issuerKey, folder);
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, `${folder}.crt`), crt);
    await writeFile(join(dir, `${folder}.key`), key);
  };
  const k = await testKeys();
  const le = caddyIssuerKey(DIRECTORY);
  await site(le, 'ok.caddy.test', await testCertificate(['ok.caddy.test'], k, expiry), k.keyPem);
  await site(le, 'wildcard_.w.caddy.test', await testCertificate(['*.w.caddy.test'], k, expiry), k.keyPem);
  await site(le, 'other.caddy.test', await testCertificate(['elsewhere.caddy.test'], k, expiry), k.keyPem);
  await site('acme.zerossl.com-v2-dv90', 'z.caddy.test', await testCertificate(['z.caddy.test'], k, expiry), k.keyPem);
  // Ed25519 as CertMagic's PEMEncodePrivateKey writes it: PKCS#8 bytes, its own label.
  const ed = await selfSignedEd25519('ed.caddy.test');
  await site(le, 'ed.caddy.test', ed.certPem, ed.keyPem.replace(/PRIVATE KEY/g, 'ED25519 PRIVATE KEY'));

  const target = await tmpDir(t, 'certgate-caddy-target-');
  const config = parseConfig({ storage: { file: { path: target } }, acme: { directory: DIRECTORY }, log: { level: 'silent' } }, { baseDir: target });
  let stdout = '';
  let stderr = '';
  const code = await runImport(config, { kind: 'caddy', from: root }, { bind: true, json: true }, { stdout: (s) => (stdout += s), stderr: (s) => (stderr += s) });
  assert.equal(code, 0, stderr);
  const summary = JSON.parse(stdout) as ImportSummary;
  const skipped = Object.fromEntries(summary.skippedEntries.map((e) => [e.name, e.reason]));
  assert.deepEqual(skipped, { 'other.caddy.test': 'name-not-in-certificate', 'z.caddy.test': 'unknown-issuer' });
  assert.equal(summary.imported, 3);
  assert.equal(summary.bound, 3);
  const storage = await FileStorage.open(target);
  const ca = caIdFromDirectory(DIRECTORY);
  for (const name of ['ok.caddy.test', '*.w.caddy.test', 'ed.caddy.test']) {
    assert.ok(await storage.get(keys.certificate(ca, name)), `${name} stored`);
    assert.equal(JSON.parse(String(await storage.get(keys.registryDomain(name)))).enabled, true, `${name} bound`);
  }
  assert.match(String(await storage.get(keys.certificateKey(ca, 'ed.caddy.test'))), /^-----BEGIN PRIVATE KEY-----/, 'stored as PKCS#8');
  await storage.close();
});

/** An Ed25519 self-signed certificate and its PKCS#8 key, made by openssl. */
async function selfSignedEd25519(name: string): Promise<{ certPem: string; keyPem: string }> {
  const { execFileSync } = await import('node:child_process');
  const { mkdtempSync, readFileSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const dir = mkdtempSync(join(tmpdir(), 'certgate-ed-'));
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ed25519', '-nodes', '-keyout', join(dir, 'k.pem'), '-out', join(dir, 'c.pem'), '-days', '30', '-subj', `/CN=${name}`, '-addext', `subjectAltName=DNS:${name}`], { stdio: 'ignore' });
    return { certPem: readFileSync(join(dir, 'c.pem'), 'utf8'), keyPem: readFileSync(join(dir, 'k.pem'), 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('forEachOfStream: every item once, never more than `limit` at a time', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(fc.nat(3), { maxLength: 60 }), fc.integer({ min: 1, max: 8 }), async (delays, limit) => {
      async function* source() {
        for (let i = 0; i < delays.length; i++) yield i;
      }
      let running = 0;
      let peak = 0;
      const seen: number[] = [];
      await forEachOfStream(source(), limit, async (i) => {
        running++;
        peak = Math.max(peak, running);
        await new Promise((r) => setTimeout(r, delays[i]));
        seen.push(i);
        running--;
      });
      assert.deepEqual(seen.sort((a, b) => a - b), delays.map((_, i) => i));
      assert.ok(peak <= limit, `peak ${peak} > limit ${limit}`);
    }),
    { seed: 42, numRuns: 100 },
  );
});
