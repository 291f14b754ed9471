// The certificate served when no real one can be: empty or invalid SNI, names policy denied,
// issuance that failed or is still running. Self-signed, generated once and kept in storage
// (so every process and restart serves the same one), or a configured cert/key pair.
import { readFile } from 'node:fs/promises';
import { createSecureContext, type SecureContext } from 'node:tls';
import { createSelfSignedCertificate } from '../acme/x509.ts';
import { keys } from '../storage/keys.ts';
import type { Storage } from '../storage/storage.ts';

/** The fallback certificate's PEM text and the context handshakes are given. */
export interface FallbackCertificate {
  certPem: string;
  keyPem: string;
  context: SecureContext;
}

/**
 * The configured pair (tls.fallback) when set, else the self-signed one in storage (created once,
 * under a storage lock, so every process serves the same one). Rejects when files or storage fail.
 */
export async function loadFallbackCertificate(storage: Storage, configured?: { cert: string; key: string }): Promise<FallbackCertificate> {
  if (configured) {
    const [certPem, keyPem] = await Promise.all([readFile(configured.cert, 'utf8'), readFile(configured.key, 'utf8')]);
    return { certPem, keyPem, context: createSecureContext({ cert: certPem, key: keyPem }) };
  }
  const pair = (await readStored(storage)) ?? (await createOnce(storage));
  return { ...pair, context: createSecureContext({ cert: pair.certPem, key: pair.keyPem }) };
}

/** Under a lock, so processes starting together agree on one fallback certificate. */
async function createOnce(storage: Storage): Promise<{ certPem: string; keyPem: string }> {
  const lock = await storage.lock(keys.fallbackLock, { ttlMs: 30_000 });
  try {
    const raced = await readStored(storage);
    if (raced) return raced;
    const pair = await createSelfSignedCertificate('certgate fallback certificate', { days: 3650 });
    await storage.put(keys.fallbackKey, pair.keyPem, { private: true });
    await storage.put(keys.fallbackCert, pair.certPem);
    return pair;
  } finally {
    await lock.release();
  }
}

async function readStored(storage: Storage): Promise<{ certPem: string; keyPem: string } | null> {
  const [cert, key] = await Promise.all([storage.get(keys.fallbackCert), storage.get(keys.fallbackKey)]);
  return cert && key ? { certPem: cert.toString('utf8'), keyPem: key.toString('utf8') } : null;
}
