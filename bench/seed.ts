// Seeded certificates: N leaf certificates for s0000000.bench.test, s0000001.bench.test, ...
// signed by a bench-only CA, written once into a cache under the OS temp dir in both gateways'
// storage layouts, then put into a gateway's storage directory (hard links, or a rename of a
// whole cache tree that is renamed back after the section).
//
// Speed: one leaf is built with @peculiar/x509 as a template; every other leaf is that
// template's to-be-signed bytes with the name and the serial number patched in place (same
// lengths, so no DER length changes) and signed again with node:crypto (ECDSA P-256/SHA-256).
// All leaves share one ECDSA P-256 key: the key does not change the handshake cost.
//
// Layouts
//   certgate  certificates/<ca id>/<domain>/{cert.pem,key.pem,meta.json}   (src/storage/keys.ts)
//   Caddy 2.6 certificates/<issuer key>/<domain>/<domain>.{crt,key,json}    (certmagic 0.17)
// Cache: <tmp>/certgate-bench-cache/v1/chunks/<k>/{certgate,caddy}/<domain>/..., 10,000 names
// per chunk, and flat/<kind>-<count>/ trees hard-linked from the chunks, which are renamed into a
// gateway's storage for a section and back afterwards.
import { createPrivateKey, createPublicKey, sign, webcrypto, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { mkdir, rename } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import '../src/acme/reflect-shim.ts';
import * as x509 from '@peculiar/x509';
import { caIdFromDirectory, keys } from '../src/storage/keys.ts';
import { type GatewayKind } from './gateways.ts';
import { caddyIssuerKey } from '../src/migrate/caddy.ts';
import { BENCH_TMP, log, now, run, seededName } from './util.ts';

export const CHUNK = 10_000;
const VERSION = 'v1';
export const CACHE_ROOT = join(BENCH_TMP, 'certgate-bench-cache', VERSION);

const crypto = webcrypto;
const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

interface Material {
  caCertPem: string;
  caKey: KeyObject;
  leafKeyPkcs8Pem: string;
  leafKeySec1Pem: string;
  /** Template leaf DER for seededName(0), serial ending in 00000000. */
  templateDer: Buffer;
  notBefore: string;
  notAfter: string;
}

function toPem(der: ArrayBuffer | Buffer, label: string): string {
  const b64 = Buffer.from(der as ArrayBuffer).toString('base64');
  return `-----BEGIN ${label}-----\n${b64.replace(/.{1,64}/g, '$&\n')}-----END ${label}-----\n`;
}

// --- minimal DER -------------------------------------------------------------------------------

function readHeader(buf: Buffer, off: number): { tag: number; len: number; hdr: number } {
  const tag = buf[off]!;
  const first = buf[off + 1]!;
  if (first < 0x80) return { tag, len: first, hdr: 2 };
  const n = first & 0x7f;
  let len = 0;
  for (let i = 0; i < n; i++) len = len * 256 + buf[off + 2 + i]!;
  return { tag, len, hdr: 2 + n };
}

function derLength(len: number): Buffer {
  if (len < 0x80) return Buffer.from([len]);
  const bytes: number[] = [];
  for (let v = len; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function tlv(tag: number, content: Buffer): Buffer {
  return Buffer.concat([Buffer.from([tag]), derLength(content.length), content]);
}

/** Splits a certificate DER into its TBSCertificate and signatureAlgorithm elements (with headers). */
function splitCertificate(der: Buffer): { tbs: Buffer; sigAlg: Buffer } {
  const outer = readHeader(der, 0);
  let off = outer.hdr;
  const t = readHeader(der, off);
  const tbs = der.subarray(off, off + t.hdr + t.len);
  off += t.hdr + t.len;
  const a = readHeader(der, off);
  const sigAlg = der.subarray(off, off + a.hdr + a.len);
  return { tbs: Buffer.from(tbs), sigAlg: Buffer.from(sigAlg) };
}

// --- material ----------------------------------------------------------------------------------

const TEMPLATE_SERIAL = '7e5a5a5a5a5a5a5a5a5a5a5a00000000';

async function createMaterial(): Promise<Material> {
  const now = Date.now();
  const notBefore = new Date(now - 24 * 3600_000);
  const notAfter = new Date(now + 3 * 365 * 24 * 3600_000);
  const caKeys = (await crypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const ca = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: '01' + Buffer.from(crypto.getRandomValues(new Uint8Array(8))).toString('hex'),
      name: 'CN=certgate bench CA',
      notBefore,
      notAfter,
      keys: caKeys,
      signingAlgorithm: ALG,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey, false, crypto),
      ],
    },
    crypto,
  );
  const leafKeys = (await crypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const template = await leafCertificate(ca, caKeys.privateKey, leafKeys.publicKey, seededName(0), TEMPLATE_SERIAL, notBefore, notAfter);
  const caKeyPem = toPem(await crypto.subtle.exportKey('pkcs8', caKeys.privateKey), 'PRIVATE KEY');
  const leafKeyPkcs8Pem = toPem(await crypto.subtle.exportKey('pkcs8', leafKeys.privateKey), 'PRIVATE KEY');
  const leafKeySec1Pem = createPrivateKey(leafKeyPkcs8Pem).export({ type: 'sec1', format: 'pem' }).toString();
  return {
    caCertPem: ca.toString('pem') + '\n',
    caKey: createPrivateKey(caKeyPem),
    leafKeyPkcs8Pem,
    leafKeySec1Pem,
    templateDer: Buffer.from(template.rawData),
    notBefore: notBefore.toISOString(),
    notAfter: notAfter.toISOString(),
  };
}

async function leafCertificate(
  ca: x509.X509Certificate,
  caPrivateKey: webcrypto.CryptoKey,
  publicKey: webcrypto.CryptoKey,
  name: string,
  serialNumber: string,
  notBefore: Date,
  notAfter: Date,
): Promise<x509.X509Certificate> {
  return x509.X509CertificateGenerator.create(
    {
      serialNumber,
      subject: `CN=${name}`,
      issuer: ca.subject,
      notBefore,
      notAfter,
      publicKey,
      signingKey: caPrivateKey,
      signingAlgorithm: ALG,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
        new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: name }]),
        await x509.AuthorityKeyIdentifierExtension.create(ca, false, crypto),
      ],
    },
    crypto,
  );
}

function loadMaterial(): Material | null {
  const file = join(CACHE_ROOT, 'material.json');
  if (!existsSync(file)) return null;
  const m = JSON.parse(readFileSync(file, 'utf8')) as Omit<Material, 'caKey' | 'templateDer'> & { caKeyPem: string; templateDerB64: string };
  // Regenerate well before the seeded certificates come near renewal time in either gateway.
  if (Date.parse(m.notAfter) - Date.now() < 700 * 24 * 3600_000) return null;
  return { ...m, caKey: createPrivateKey(m.caKeyPem), templateDer: Buffer.from(m.templateDerB64, 'base64') };
}

let material: Promise<Material> | undefined;

function getMaterial(): Promise<Material> {
  material ??= (async () => {
    const existing = loadMaterial();
    if (existing) return existing;
    rmSync(CACHE_ROOT, { recursive: true, force: true });
    mkdirSync(CACHE_ROOT, { recursive: true });
    const m = await createMaterial();
    const { caKey, templateDer, ...rest } = m;
    writeFileSync(
      join(CACHE_ROOT, 'material.json'),
      JSON.stringify({ ...rest, caKeyPem: caKey.export({ type: 'pkcs8', format: 'pem' }).toString(), templateDerB64: templateDer.toString('base64') }),
    );
    return m;
  })();
  return material;
}

/** Leaf DER for seededName(index): the template with name and serial patched, signed again. */
function leafDer(m: Material, tbsTemplate: Buffer, sigAlg: Buffer, namePositions: number[], serialPos: number, index: number): Buffer {
  const tbs = Buffer.from(tbsTemplate);
  const name = Buffer.from(seededName(index), 'ascii');
  for (const p of namePositions) name.copy(tbs, p);
  tbs.writeUInt32BE(index, serialPos);
  const sig = sign('sha256', tbs, { key: m.caKey, dsaEncoding: 'der' });
  const bitString = tlv(0x03, Buffer.concat([Buffer.from([0]), sig]));
  return tlv(0x30, Buffer.concat([tbs, sigAlg, bitString]));
}

function positionsOf(haystack: Buffer, needle: Buffer): number[] {
  const out: number[] = [];
  for (let i = haystack.indexOf(needle); i !== -1; i = haystack.indexOf(needle, i + 1)) out.push(i);
  return out;
}

async function ensureChunk(k: number): Promise<string> {
  const dir = join(CACHE_ROOT, 'chunks', String(k));
  if (existsSync(join(dir, '.done'))) return dir;
  const m = await getMaterial();
  const started = now();
  rmSync(dir, { recursive: true, force: true });
  const { tbs, sigAlg } = splitCertificate(m.templateDer);
  const namePositions = positionsOf(tbs, Buffer.from(seededName(0), 'ascii'));
  const serialPositions = positionsOf(tbs, Buffer.from(TEMPLATE_SERIAL, 'hex'));
  if (namePositions.length !== 2 || serialPositions.length !== 1) throw new Error(`seed: unexpected template (${namePositions.length} names, ${serialPositions.length} serials)`);
  const serialPos = serialPositions[0]! + TEMPLATE_SERIAL.length / 2 - 4;
  for (let i = k * CHUNK; i < (k + 1) * CHUNK; i++) {
    const name = seededName(i);
    const chain = toPem(leafDer(m, tbs, sigAlg, namePositions, serialPos, i), 'CERTIFICATE') + m.caCertPem;
    const cg = join(dir, 'certgate', name);
    mkdirSync(cg, { recursive: true });
    writeFileSync(join(cg, 'key.pem'), m.leafKeyPkcs8Pem, { mode: 0o600 });
    writeFileSync(
      join(cg, 'meta.json'),
      JSON.stringify({ domain: name, names: [name], ca: 'bench', directory: 'bench', notBefore: m.notBefore, notAfter: m.notAfter, keyType: 'ecdsa-p256', obtainedAt: m.notBefore }, null, 2) + '\n',
    );
    writeFileSync(join(cg, 'cert.pem'), chain);
    const cd = join(dir, 'caddy', name);
    mkdirSync(cd, { recursive: true });
    writeFileSync(join(cd, `${name}.crt`), chain, { mode: 0o600 });
    writeFileSync(join(cd, `${name}.key`), m.leafKeySec1Pem, { mode: 0o600 });
    writeFileSync(join(cd, `${name}.json`), JSON.stringify({ sans: [name], issuer_data: { url: `https://bench.invalid/cert/${i}` } }, null, '\t'), { mode: 0o600 });
  }
  writeFileSync(join(dir, '.done'), '');
  log(`seed cache: generated names ${k * CHUNK}..${(k + 1) * CHUNK - 1} in ${Math.round(now() - started)} ms`);
  return dir;
}

/** Makes sure the cache holds at least `count` names (a multiple of CHUNK, or 1). */
export async function prepareSeed(count: number): Promise<void> {
  for (let k = 0; k * CHUNK < count; k++) await ensureChunk(k);
}

/** The storage sub-directory certificates live in, for a gateway and ACME directory URL. */
export function certificateDir(kind: GatewayKind, storageDir: string, acmeDirectory: string): string {
  return join(storageDir, 'certificates', kind === 'certgate' ? caIdFromDirectory(acmeDirectory) : caddyIssuerKey(acmeDirectory));
}

/**
 * A flat cache tree of `count` names (a multiple of CHUNK) in one gateway's layout, built once by
 * hard links from the chunks. It is renamed into a gateway's storage for a section and renamed
 * back afterwards (O(1) either way); if a run dies in between, the next run rebuilds it.
 */
async function ensureFlat(kind: GatewayKind, count: number): Promise<string> {
  const dir = join(CACHE_ROOT, 'flat', `${kind}-${count}`);
  const done = `${dir}.done`;
  if (existsSync(done) && existsSync(dir)) return dir;
  await prepareSeed(count);
  const started = now();
  rmSync(done, { force: true });
  rmSync(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const sub = kind === 'certgate' ? 'certgate' : 'caddy';
  // `cp -al <chunk>/. dir` links a whole chunk's contents (one chunk per call: with several
  // sources cp would create dir/<chunk name> instead).
  for (let k = 0; k * CHUNK < count; k++) {
    const r = await run('cp', ['-al', join(CACHE_ROOT, 'chunks', String(k), sub) + '/.', dir], { timeoutMs: 300_000 });
    if (r.code !== 0) throw new Error(`seed: cp -al failed: ${r.stderr || r.error}`);
  }
  writeFileSync(done, '');
  log(`seed cache: linked a ${count}-name ${kind} tree in ${Math.round(now() - started)} ms`);
  return dir;
}

// Cache trees currently renamed into a gateway's storage: given back even if the run is cut short.
const leases = new Map<string, string>();
process.on('exit', () => {
  for (const [flat, dest] of leases) {
    try {
      if (existsSync(dest) && !existsSync(flat)) renameSync(dest, flat);
    } catch {
      // the next run rebuilds the tree
    }
  }
});

export interface Seeded {
  ms: number;
  /** Gives the cache tree back (call after the gateway stopped). */
  release(): Promise<void>;
}

/**
 * Puts `count` seeded certificates (1, or a multiple of 10,000) into a gateway's storage: one
 * file copy for a single certificate, else the cache tree renamed into place. Gateways only read
 * these files (nothing is issued or renewed for them: they are valid for years).
 */
export async function seedStorage(kind: GatewayKind, storageDir: string, acmeDirectory: string, count: number): Promise<Seeded> {
  const started = now();
  const dest = certificateDir(kind, storageDir, acmeDirectory);
  await mkdir(dirname(dest), { recursive: true, mode: 0o700 });
  if (kind === 'certgate') {
    // A restarted deployment already has its fallback certificate: seed one (the bench CA's
    // `localhost` certificate) so start-up does not generate it.
    const lh = await localhostCertificate();
    await mkdir(join(storageDir, 'fallback'), { recursive: true, mode: 0o700 });
    writeFileSync(join(storageDir, 'fallback', 'cert.pem'), lh.certPem);
    writeFileSync(join(storageDir, 'fallback', 'key.pem'), lh.keyPem, { mode: 0o600 });
    // certgate writes its renewal index as it saves each certificate, so a real store of this size
    // is already indexed: mark it so, or the maintainer would run its one-time migration (a full
    // listing) in the middle of the measurements. The seeded certificates never need renewal.
    await mkdir(join(storageDir, 'index'), { recursive: true, mode: 0o700 });
    writeFileSync(join(storageDir, ...keys.indexBackfilled.split('/')), JSON.stringify({ at: new Date().toISOString(), indexed: 0, seededByBench: true }));
  }
  let release = async (): Promise<void> => {};
  if (count < CHUNK) {
    await prepareSeed(count);
    await mkdir(dest, { recursive: true, mode: 0o700 });
    const sub = kind === 'certgate' ? 'certgate' : 'caddy';
    const sources = Array.from({ length: count }, (_, i) => join(CACHE_ROOT, 'chunks', '0', sub, seededName(i)));
    const r = await run('cp', ['-al', ...sources, dest], { timeoutMs: 60_000 });
    if (r.code !== 0) throw new Error(`seed: cp -al failed: ${r.stderr || r.error}`);
  } else {
    const flat = await ensureFlat(kind, count);
    await rename(flat, dest);
    leases.set(flat, dest);
    release = async () => {
      leases.delete(flat);
      if (existsSync(dest) && !existsSync(flat)) await rename(dest, flat);
    };
  }
  const ms = now() - started;
  log(`seeded ${count} certificates into ${kind} storage in ${Math.round(ms)} ms`);
  return { ms, release };
}

/** Builds the cache trees a run will need, before any timing starts. */
export async function prepareTrees(kinds: GatewayKind[], counts: number[]): Promise<void> {
  for (const count of counts) {
    if (count < CHUNK) await prepareSeed(count);
    else for (const kind of kinds) await ensureFlat(kind, count);
  }
}

/** A certificate for `localhost` from the bench CA (the proxy-throughput SNI), PEM files in the cache. */
export async function localhostCertificate(): Promise<{ cert: string; key: string; certPem: string; keyPem: string }> {
  const m = await getMaterial();
  const certFile = join(CACHE_ROOT, 'localhost.crt');
  const keyFile = join(CACHE_ROOT, 'localhost.key');
  if (!existsSync(certFile)) {
    const caKey = await crypto.subtle.importKey('pkcs8', m.caKey.export({ type: 'pkcs8', format: 'der' }), ALG, false, ['sign']);
    const ca = new x509.X509Certificate(m.caCertPem);
    const leafPublic = await crypto.subtle.importKey('spki', createPublicKey(m.leafKeyPkcs8Pem).export({ type: 'spki', format: 'der' }), ALG, true, ['verify']);
    const leaf = await leafCertificate(ca, caKey, leafPublic, 'localhost', '02' + Buffer.from(crypto.getRandomValues(new Uint8Array(8))).toString('hex'), new Date(m.notBefore), new Date(m.notAfter));
    writeFileSync(keyFile, m.leafKeyPkcs8Pem, { mode: 0o600 });
    writeFileSync(certFile, leaf.toString('pem') + '\n' + m.caCertPem);
  }
  return { cert: certFile, key: keyFile, certPem: readFileSync(certFile, 'utf8'), keyPem: readFileSync(keyFile, 'utf8') };
}

/** Caddy: the `localhost` certificate placed in storage, loaded on demand like any stored name. */
export async function seedCaddyLocalhost(storageDir: string, acmeDirectory: string): Promise<void> {
  const { certPem } = await localhostCertificate();
  const m = await getMaterial();
  const dir = join(certificateDir('caddy', storageDir, acmeDirectory), 'localhost');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  writeFileSync(join(dir, 'localhost.crt'), certPem, { mode: 0o600 });
  writeFileSync(join(dir, 'localhost.key'), m.leafKeySec1Pem, { mode: 0o600 });
  writeFileSync(join(dir, 'localhost.json'), JSON.stringify({ sans: ['localhost'], issuer_data: { url: 'https://bench.invalid/cert/localhost' } }), { mode: 0o600 });
}
