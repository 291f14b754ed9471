// Runs a certgate gateway in-process for end-to-end tests, against a real Pebble, with its
// storage wrapped so tests can count reads, and a trivial upstream to proxy to.
import { X509Certificate } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../src/config/load.ts';
import { silentLogger, type Logger } from '../../src/util/log.ts';
import { startGateway, type Gateway } from '../../src/gateway/index.ts';
import { FileStorage } from '../../src/storage/file/store.ts';
import { keys } from '../../src/storage/keys.ts';
import { RedisStorage } from '../../src/storage/redis/store.ts';
import { putInOrder, type ListOptions, type Lock, type LockOptions, type PutEntry, type PutOptions, type Storage } from '../../src/storage/storage.ts';
import type { HandshakeOutcome } from '../../src/tls/handshake.ts';
import { setTimeout as sleep } from 'node:timers/promises';
import type { PeerCertificate } from 'node:tls';
import { peerCertificate } from './clients.ts';
import type { PebbleHandle } from './pebble.ts';

/** Delegates to a real storage and counts every call, by method (each value of a putMany as a put too). */
export class CountingStorage implements Storage {
  readonly counts = { get: 0, put: 0, putMany: 0, delete: 0, list: 0, lock: 0 };
  constructor(readonly inner: Storage) {}
  get description() {
    return this.inner.description;
  }
  get(key: string) {
    this.counts.get++;
    return this.inner.get(key);
  }
  put(key: string, value: Buffer | string, opts?: PutOptions) {
    this.counts.put++;
    return this.inner.put(key, value, opts);
  }
  putMany(entries: readonly PutEntry[]) {
    this.counts.putMany++;
    this.counts.put += entries.length;
    return putInOrder(this.inner, entries);
  }
  delete(key: string) {
    this.counts.delete++;
    return this.inner.delete(key);
  }
  list(prefix: string, opts?: ListOptions) {
    this.counts.list++;
    return this.inner.list(prefix, opts);
  }
  lock(name: string, opts: LockOptions): Promise<Lock> {
    this.counts.lock++;
    return this.inner.lock(name, opts);
  }
  tryLock(name: string, opts: LockOptions) {
    this.counts.lock++;
    return this.inner.tryLock(name, opts);
  }
  close() {
    return this.inner.close();
  }
}

export interface TestGateway {
  gateway: Gateway;
  storage: CountingStorage;
  dataDir: string;
  outcomes: Array<{ outcome: HandshakeOutcome; domain: string | undefined }>;
  close(opts?: { keepData?: boolean }): Promise<void>;
}

export interface TestGatewayOptions {
  pebble: PebbleHandle;
  /** Ports Pebble validates against; the gateway must listen on them to pass challenges. */
  httpsPort: number;
  httpPort: number;
  /** Raw config merged over the defaults below (listen/acme are filled in). */
  config?: Record<string, unknown>;
  dataDir?: string;
  logger?: Logger;
  /** Use Redis storage (and its pub/sub bus) instead of file storage in dataDir. */
  redis?: { url: string; prefix: string };
}

export async function startTestGateway(opts: TestGatewayOptions): Promise<TestGateway> {
  const dataDir = opts.dataDir ?? (await mkdtemp(join(tmpdir(), 'certgate-e2e-')));
  const extra = opts.config ?? {};
  const raw = {
    ...extra,
    // The admin API on a free port unless the test chooses (the default 2019 would collide).
    listen: { https: `127.0.0.1:${opts.httpsPort}`, http: `127.0.0.1:${opts.httpPort}`, admin: '127.0.0.1:0', ...((extra.listen as object) ?? {}) },
    storage: opts.redis ? { redis: opts.redis } : { file: { path: dataDir } },
    acme: { directory: opts.pebble.directoryUrl, trustedRoots: [opts.pebble.listenerCaPath], ...((extra.acme as object) ?? {}) },
    log: { level: 'silent' },
    // The tests written before `tls.denied` (default alert) check the fallback for refused names.
    tls: { denied: 'fallback', ...((extra.tls as object) ?? {}) },
  };
  const config = parseConfig(raw, { baseDir: dataDir });
  const inner = opts.redis
    ? await RedisStorage.connect({ ...opts.redis, logger: silentLogger() })
    : await FileStorage.open(dataDir);
  const storage = new CountingStorage(inner);
  const outcomes: TestGateway['outcomes'] = [];
  const gateway = await startGateway(config, {
    storage,
    ...(inner instanceof RedisStorage ? { bus: inner } : {}),
    logger: opts.logger ?? (process.env.CERTGATE_TEST_LOG ? undefined : silentLogger()),
    onHandshake: (outcome, domain) => outcomes.push({ outcome, domain }),
  });
  return {
    gateway,
    storage,
    dataDir,
    outcomes,
    async close({ keepData = false } = {}) {
      await gateway.close();
      await inner.close();
      if (!keepData && !opts.dataDir) await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * SHA-256 fingerprint (as node:tls reports it) of the fallback certificate `gw` serves for names
 * it has no certificate for. Read past the counting wrapper, so storage counts stay the test's own.
 */
export async function fallbackFingerprint(gw: TestGateway): Promise<string> {
  const pem = await gw.storage.inner.get(keys.fallbackCert);
  if (pem === null) throw new Error(`no fallback certificate in ${gw.storage.description}`);
  return new X509Certificate(pem).fingerprint256;
}

/**
 * The certificate `port` serves for `name` once it is not the fallback (a managed certificate's
 * start-up order may still run); throws after `timeoutMs`.
 */
export async function servedCertificate(gw: TestGateway, port: number, name: string, timeoutMs = 120_000): Promise<PeerCertificate> {
  const fallback = await fallbackFingerprint(gw);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const cert = await peerCertificate(port, name);
    if (cert.fingerprint256 !== fallback) return cert;
    if (Date.now() > deadline) throw new Error(`${name}: still the fallback certificate after ${timeoutMs} ms`);
    await sleep(200);
  }
}
