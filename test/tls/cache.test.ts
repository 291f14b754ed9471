// The two-tier certificate cache: live SecureContexts only for the hot set, compact entries
// (PEM + metadata) for the rest; a compact hit builds its context from memory and is promoted;
// eviction and expiry keep the tiers consistent; every context served is a working one (real
// TLS handshakes against a Node server whose SNICallback answers from the cache).
import assert from 'node:assert/strict';
import { createPrivateKey, generateKeyPairSync, X509Certificate, type KeyObject } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { connect, createServer, type SecureContext, type Server } from 'node:tls';
import { createSelfSignedCertificate } from '../../src/acme/x509.ts';
import type { CertificateBundle } from '../../src/issuance/store.ts';
import { CertificateCache } from '../../src/tls/cache.ts';
import { LruCache } from '../../src/util/lru.ts';

async function bundle(domain: string, days = 30): Promise<CertificateBundle> {
  const { certPem, keyPem } = await createSelfSignedCertificate(domain, { days });
  const leaf = new X509Certificate(certPem);
  return { domain, ca: 'test-ca', certPem, keyPem, notBefore: leaf.validFromDate, notAfter: leaf.validToDate, fingerprint256: leaf.fingerprint256 };
}

/** A self-signed certificate for `domain` made with an existing key pair (here: RSA). */
async function signedWith(domain: string, keys: { privateKey: KeyObject; publicKey: KeyObject }): Promise<string> {
  await import('../../src/acme/reflect-shim.ts');
  const x509 = await import('@peculiar/x509');
  const alg = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: `CN=${domain}`,
    keys: { privateKey: await keys.privateKey.toCryptoKey(alg, true, ['sign']), publicKey: await keys.publicKey.toCryptoKey(alg, true, ['verify']) },
    signingAlgorithm: alg,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 30 * 86_400_000),
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: domain }])],
  });
  return cert.toString('pem');
}

describe('CertificateCache (two tiers)', () => {
  const bundles = new Map<string, CertificateBundle>();
  const names = ['a.cache.test', 'b.cache.test', 'c.cache.test', 'd.cache.test', 'e.cache.test'];
  before(async () => {
    for (const name of names) bundles.set(name, await bundle(name));
  });
  const b = (name: string) => bundles.get(name)!;

  test('only the most recently served names keep a live SecureContext; the others stay cached compactly', () => {
    const cache = new CertificateCache(10, 2);
    for (const name of names) cache.add(b(name));
    assert.equal(cache.size, 5);
    assert.equal(cache.contexts, 2);
    // Every name is still a hit: no storage needed.
    for (const name of names) assert.equal(cache.get(name)?.fingerprint256, b(name).fingerprint256);
    assert.deepEqual(cache.domains(), names);
  });

  test('a compact hit builds the context once and promotes it; the hot tier evicts its least recently served', () => {
    const cache = new CertificateCache(10, 2);
    for (const name of names) cache.add(b(name)); // hot: d, e
    const d = cache.get('d.cache.test')!;
    const dContext = d.context;
    assert.equal(d.context, dContext, 'hot entry: the same live context on every use');

    const a = cache.get('a.cache.test')!;
    const aContext = a.context; // built from memory, promoted; evicts e (d was served more recently)
    assert.equal(a.context, aContext, 'promoted: kept live');
    assert.equal(cache.contexts, 2);
    assert.equal(cache.get('d.cache.test')!.context, dContext, 'd stays hot');
    const e = cache.get('e.cache.test')!;
    const eFirst = e.context; // rebuilt (it was evicted from the hot tier)
    assert.equal(e.context, eFirst);
    assert.notEqual(cache.get('a.cache.test')!.context, aContext, 'a was evicted from the hot tier by e and rebuilt');
    assert.equal(cache.contexts, 2);
  });

  test('eviction from the compact tier drops the name from both tiers', () => {
    const cache = new CertificateCache(3, 2);
    for (const name of names) cache.add(b(name));
    assert.equal(cache.size, 3);
    assert.deepEqual(cache.domains(), ['c.cache.test', 'd.cache.test', 'e.cache.test']);
    assert.equal(cache.get('a.cache.test'), undefined);
    assert.equal(cache.get('b.cache.test'), undefined);
    assert.ok(cache.contexts <= 2);
    // Touch c (compact only) so d becomes least recent, then add a name: d goes, from both tiers.
    void cache.get('c.cache.test')!.context;
    cache.add(b('a.cache.test'));
    assert.equal(cache.peek('d.cache.test'), undefined);
    assert.deepEqual(cache.domains().sort(), ['a.cache.test', 'c.cache.test', 'e.cache.test']);
    assert.ok(cache.contexts <= 2);
  });

  test('expired entries are dropped from both tiers on lookup', () => {
    const cache = new CertificateCache(10, 2);
    const entry = cache.add(b('a.cache.test'));
    assert.equal(cache.contexts, 1);
    assert.equal(cache.get('a.cache.test', entry.notAfter + 1), undefined);
    assert.equal(cache.size, 0);
    assert.equal(cache.contexts, 0);
    assert.equal(cache.peek('a.cache.test'), undefined);
  });

  test('replacing and deleting a name leave no stale context behind', async () => {
    const cache = new CertificateCache(10, 2);
    const old = cache.add(b('a.cache.test'));
    const replacement = await bundle('a.cache.test');
    cache.add(replacement);
    assert.equal(cache.get('a.cache.test')!.fingerprint256, replacement.fingerprint256);
    // A handshake still holding the old entry gets a working context, but it is not kept live.
    assert.ok(old.context);
    assert.equal(cache.contexts, 1);
    assert.equal(cache.size, 1);
    cache.delete('a.cache.test');
    assert.equal(cache.size, 0);
    assert.equal(cache.contexts, 0);
    assert.equal(cache.get('a.cache.test'), undefined);
  });

  test('without a second size the hot tier is at most 1,000 and never larger than the cache', () => {
    const small = new CertificateCache(3);
    for (const name of names) small.add(b(name));
    assert.equal(small.contexts, 3);
  });

  describe('contexts built from the compact tier serve real handshakes', () => {
    let server: Server;
    let port: number;
    const cache = new CertificateCache(10, 1);
    before(async () => {
      for (const name of names) cache.add(b(name)); // only e is live
      server = createServer({
        SNICallback(name: string, cb: (err: Error | null, ctx?: SecureContext) => void) {
          const hit = cache.get(name);
          cb(hit ? null : new Error(`not cached: ${name}`), hit?.context);
        },
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      port = (server.address() as AddressInfo).port;
    });
    after(() => new Promise<void>((resolve) => server.close(() => resolve())));

    function fingerprint(servername: string): Promise<string> {
      return new Promise((resolve, reject) => {
        const socket = connect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false }, () => {
          const fp = socket.getPeerCertificate().fingerprint256;
          socket.end();
          resolve(fp);
        });
        socket.setTimeout(10_000, () => socket.destroy(new Error('handshake timeout')));
        socket.on('error', reject);
      });
    }

    test('a compact entry keeps its key in the stored form (PKCS#8, SEC1, PKCS#1 RSA, CRLF lines, or a key that is not one plain PEM block)', async () => {
      const sec1 = await bundle('sec1.cache.test');
      sec1.keyPem = createPrivateKey(sec1.keyPem).export({ type: 'sec1', format: 'pem' }) as string;
      const rsaKeys = generateKeyPairSync('rsa', { modulusLength: 2048 });
      const rsa = await bundle('rsa.cache.test');
      rsa.certPem = await signedWith(rsa.domain, rsaKeys);
      rsa.keyPem = rsaKeys.privateKey.export({ type: 'pkcs1', format: 'pem' }) as string;
      rsa.fingerprint256 = new X509Certificate(rsa.certPem).fingerprint256;
      const odd = await bundle('odd.cache.test');
      odd.keyPem = `a comment before the block\n${odd.keyPem}`;
      odd.certPem = odd.certPem.replace(/\n(?!-----)/g, '\r\n'); // CRLF lines: re-encoded with LF
      const crlf = odd.certPem;
      for (const x of [sec1, rsa, odd]) cache.add(x);
      cache.add(b('e.cache.test')); // the three leave the hot tier: their next context is rebuilt
      for (const x of [sec1, rsa, odd]) assert.equal(await fingerprint(x.domain), x.fingerprint256, x.domain);
      assert.ok(crlf.includes('\r\n'));
    });

    test('each name gets its own certificate, twice over, with one live context at a time', async () => {
      for (const round of [1, 2]) {
        for (const name of names) {
          assert.equal(await fingerprint(name), b(name).fingerprint256, `${name}, round ${round}`);
          assert.equal(cache.contexts, 1);
        }
      }
    });
  });
});

/** Two leaves issued by one CA: bundles whose certPem is leaf + CA, as an ACME CA's chains are. */
async function issuedByOneCa(domains: string[]): Promise<{ caFingerprint: string; bundles: CertificateBundle[] }> {
  await import('../../src/acme/reflect-shim.ts');
  const x509 = await import('@peculiar/x509');
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const caKeys = await crypto.subtle.generateKey(alg, true, ['sign', 'verify']);
  const notBefore = new Date(Date.now() - 60_000);
  const notAfter = new Date(Date.now() + 30 * 86_400_000);
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    name: 'CN=cache test CA', keys: caKeys, signingAlgorithm: alg, notBefore, notAfter, serialNumber: '01',
    extensions: [new x509.BasicConstraintsExtension(true, undefined, true)],
  });
  const bundles: CertificateBundle[] = [];
  for (const [i, domain] of domains.entries()) {
    const keys = await crypto.subtle.generateKey(alg, true, ['sign', 'verify']);
    const leaf = await x509.X509CertificateGenerator.create({
      subject: `CN=${domain}`, issuer: ca.subject, publicKey: keys.publicKey, signingKey: caKeys.privateKey, signingAlgorithm: alg,
      notBefore, notAfter, serialNumber: `0${i + 2}`, extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: domain }])],
    });
    const pkcs8 = Buffer.from(await crypto.subtle.exportKey('pkcs8', keys.privateKey)).toString('base64');
    const keyPem = `-----BEGIN PRIVATE KEY-----\n${pkcs8.match(/.{1,64}/g)!.join('\n')}\n-----END PRIVATE KEY-----\n`;
    const certPem = `${leaf.toString('pem')}\n${ca.toString('pem')}\n`;
    const parsed = new X509Certificate(certPem);
    bundles.push({ domain, ca: 'test-ca', certPem, keyPem, notBefore: parsed.validFromDate, notAfter: parsed.validToDate, fingerprint256: parsed.fingerprint256 });
  }
  return { caFingerprint: new X509Certificate(ca.toString('pem')).fingerprint256, bundles };
}

describe('CertificateCache keeps chains whole while sharing them between entries', () => {
  test('contexts rebuilt from compact entries serve each leaf with its issuer chain', async () => {
    const { caFingerprint, bundles } = await issuedByOneCa(['one.chain.test', 'two.chain.test', 'three.chain.test']);
    const cache = new CertificateCache(10, 1);
    for (const bundle of bundles) cache.add(bundle); // only the last is live; the others rebuild theirs
    const server = createServer({
      SNICallback(name: string, cb: (err: Error | null, ctx?: SecureContext) => void) {
        const hit = cache.get(name);
        cb(hit ? null : new Error(`not cached: ${name}`), hit?.context);
      },
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    try {
      for (const bundle of [...bundles, ...bundles]) {
        const served = await new Promise<{ leaf: string; issuer: string | undefined }>((resolve, reject) => {
          const socket = connect({ host: '127.0.0.1', port, servername: bundle.domain, rejectUnauthorized: false }, () => {
            const peer = socket.getPeerCertificate(true);
            socket.end();
            resolve({ leaf: peer.fingerprint256, issuer: peer.issuerCertificate?.fingerprint256 });
          });
          socket.setTimeout(10_000, () => socket.destroy(new Error('handshake timeout')));
          socket.on('error', reject);
        });
        assert.equal(served.leaf, bundle.fingerprint256, bundle.domain);
        assert.equal(served.issuer, caFingerprint, `${bundle.domain}: the CA certificate is sent after the leaf`);
      }
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

describe('CertificateCache frees what leaves the hot tier', () => {
  test('an evicted SecureContext is closed after a grace period (its SSL_CTX no longer serves)', async () => {
    const defaultPair = await createSelfSignedCertificate('default.cache.test');
    const cache = new CertificateCache(10, 1);
    const a = await bundle('a.cache.test');
    cache.add(a);
    const aContext = cache.get('a.cache.test')!.context;
    let serve: SecureContext = aContext;
    const server = createServer({ cert: defaultPair.certPem, key: defaultPair.keyPem, SNICallback: (_name, cb) => cb(null, serve) });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    const commonName = (servername: string) =>
      new Promise<string>((resolve, reject) => {
        const socket = connect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false }, () => {
          resolve(String(socket.getPeerCertificate().subject?.CN));
          socket.end();
        });
        socket.on('error', reject);
      });
    try {
      assert.equal(await commonName('a.cache.test'), 'a.cache.test');
      cache.add(await bundle('b.cache.test')); // a leaves the hot tier
      await new Promise((resolve) => setTimeout(resolve, 1500)); // the grace period is 250-500 ms
      // Closed: OpenSSL has no context to switch to and the server's default certificate is sent.
      assert.equal(await commonName('a.cache.test'), 'default.cache.test');
      // The cache itself builds a fresh one.
      serve = cache.get('a.cache.test')!.context;
      assert.equal(await commonName('a.cache.test'), 'a.cache.test');
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

describe('LruCache', () => {
  test('evicts the least recently used entry and reports it', () => {
    const evicted: string[] = [];
    const lru = new LruCache<string, number>(3, (key) => evicted.push(key));
    lru.set('a', 1);
    lru.set('b', 2);
    lru.set('c', 3);
    assert.equal(lru.get('a'), 1); // a is now the most recent
    lru.set('d', 4);
    assert.deepEqual(evicted, ['b']);
    assert.deepEqual([...lru.keys()], ['c', 'a', 'd']);
    lru.delete('c');
    assert.deepEqual(evicted, ['b'], 'delete is not eviction');
  });

  test('a busy key is not moved on every access, yet is never the one evicted', () => {
    const evicted: number[] = [];
    const lru = new LruCache<number, number>(800, (key) => evicted.push(key));
    for (let i = 0; i < 800; i++) lru.set(i, i);
    // Key 0 is served between every two new names: it must survive however many come and go.
    for (let i = 800; i < 5000; i++) {
      assert.equal(lru.get(0), 0);
      lru.set(i, i);
    }
    assert.ok(!evicted.includes(0));
    assert.equal(lru.size, 800);
    // The other evictions are in insertion order (nothing else was read).
    assert.deepEqual(evicted, Array.from({ length: 4200 }, (_, i) => i + 1));
  });
});
