// Challenge tokens shared through storage (StoredTokens, the http-01 and tls-alpn-01 solvers)
// when storage fails for a moment: the CA's validation, answered by an instance whose Redis
// connection is still reconnecting, waits for it instead of getting a 500 (which would fail the
// authorization and put the name into backoff); a token written during a reconnect lands once
// Redis is back. Bounded: a storage that stays down still gets a clear 500.
import assert from 'node:assert/strict';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { Http01Solver, HTTP01_PREFIX, TlsAlpn01Solver } from '../../src/acme/solvers.ts';
import { silentLogger } from '../../src/util/log.ts';
import { keys } from '../../src/storage/keys.ts';
import { RedisStorage } from '../../src/storage/redis/store.ts';
import { retryStorageErrors, StorageError, type Storage } from '../../src/storage/storage.ts';
import { StoredTokens } from '../../src/storage/tokens.ts';
import { startRedis, type RedisHandle } from '../support/redis.ts';

/** An in-memory Storage whose get/put fail with StorageError while `down` is set. */
class FlakyStorage implements Pick<Storage, 'get' | 'put' | 'delete'> {
  readonly values = new Map<string, string>();
  down = false;
  attempts = 0;
  async get(key: string): Promise<Buffer | null> {
    this.check(key, 'read');
    const value = this.values.get(key);
    return value === undefined ? null : Buffer.from(value);
  }
  async put(key: string, value: Buffer | string): Promise<void> {
    this.check(key, 'write');
    this.values.set(key, value.toString());
  }
  async delete(key: string): Promise<void> {
    this.check(key, 'delete');
    this.values.delete(key);
  }
  private check(key: string, step: string): void {
    this.attempts++;
    if (this.down) throw new StorageError(`flaky storage: ${step} of ${JSON.stringify(key)} failed: Redis is unreachable`, key, step);
  }
}

describe('challenge tokens in storage', () => {
  test('are written without durability (worthless after a crash): no fsync on the order path', async () => {
    const puts: unknown[] = [];
    const recording = { get: async () => null, delete: async () => undefined, put: async (_key: string, _value: Buffer | string, opts?: unknown) => void puts.push(opts) };
    await tokens(recording, 1000).set('tok', 'key-authorization', 'name.test');
    assert.deepEqual(puts, [{ durable: false }]);
  });
});

function tokens(storage: Pick<Storage, 'get' | 'put' | 'delete'>, budgetMs: number): StoredTokens {
  return new StoredTokens({
    storage: storage as Storage,
    logger: silentLogger(),
    prefix: HTTP01_PREFIX,
    keyOf: keys.http01Token,
    tokenPattern: /^[A-Za-z0-9_-]+$/,
    contentType: 'application/octet-stream',
    unknownBody: 'unknown challenge\n',
    step: 'http-01-validation',
    storageRetry: { budgetMs, initialDelayMs: 20, maxDelayMs: 100 },
  });
}

/** An HTTP listener that answers through `handle` (the gateway's port-80 listener, reduced). */
async function listen(handle: (req: Parameters<StoredTokens['handle']>[0], res: Parameters<StoredTokens['handle']>[1]) => boolean): Promise<Server> {
  const server = createServer((req, res) => {
    if (!handle(req, res)) res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

/** The CA's validation request: GET the token with the name as Host. */
function validate(server: Server, token: string): Promise<{ status: number; body: string }> {
  const { port } = server.address() as AddressInfo;
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: `${HTTP01_PREFIX}${token}`, headers: { host: 'name.test' }, timeout: 20_000 }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString('utf8')));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('validation request timed out')));
    req.on('error', reject);
    req.end();
  });
}

describe('StoredTokens: storage failing for a moment', () => {
  test('a lookup that fails is retried until storage answers, then the token is served', async (t) => {
    const storage = new FlakyStorage();
    storage.values.set(keys.http01Token('tok'), 'key-auth');
    const server = await listen((req, res) => tokens(storage, 5_000).handle(req, res));
    t.after(() => server.close());
    storage.down = true;
    setTimeout(() => (storage.down = false), 300);
    const started = Date.now();
    const answer = await validate(server, 'tok');
    assert.deepEqual(answer, { status: 200, body: 'key-auth' });
    assert.ok(Date.now() - started >= 250, 'it waited for storage');
    assert.ok(storage.attempts > 2, `retried (${storage.attempts} attempts)`);
  });

  test('a storage that stays down gets a 500 once the bound is spent, not a hang', async (t) => {
    const storage = new FlakyStorage();
    storage.down = true;
    const server = await listen((req, res) => tokens(storage, 400).handle(req, res));
    t.after(() => server.close());
    const started = Date.now();
    const answer = await validate(server, 'tok');
    const elapsed = Date.now() - started;
    assert.deepEqual(answer, { status: 500, body: 'lookup failed\n' });
    // "Not a hang": well past the 400 ms bound is still an answer; a loaded machine must not fail it.
    assert.ok(elapsed >= 350 && elapsed < 15_000, `answered after ${elapsed} ms`);
  });

  test('a write that fails is retried until storage takes it; other errors are not retried', async () => {
    const storage = new FlakyStorage();
    storage.down = true;
    setTimeout(() => (storage.down = false), 200);
    await tokens(storage, 5_000).set('tok', 'key-auth', 'name.test');
    assert.equal(storage.values.get(keys.http01Token('tok')), 'key-auth');

    let calls = 0;
    await assert.rejects(
      retryStorageErrors(async () => {
        calls++;
        throw new Error('not a storage error');
      }, { budgetMs: 1_000, initialDelayMs: 10, maxDelayMs: 10 }),
      /not a storage error/,
    );
    assert.equal(calls, 1);
    await assert.rejects(
      retryStorageErrors(async () => {
        calls++;
        throw new StorageError('invalid storage key "/x"', '/x', 'validate-key');
      }, { budgetMs: 1_000, initialDelayMs: 10, maxDelayMs: 10 }),
      /invalid storage key/,
    );
    assert.equal(calls, 2, 'an invalid key stays invalid: no retry');
  });
});

describe('challenge tokens on Redis: an instance whose connection is still reconnecting', () => {
  let redis: RedisHandle;
  let placing: RedisStorage;
  let answering: RedisStorage;
  before(async () => {
    redis = await startRedis();
    placing = await RedisStorage.connect({ url: redis.url, prefix: 'tokens:', logger: silentLogger() });
    answering = await RedisStorage.connect({ url: redis.url, prefix: 'tokens:', logger: silentLogger() });
  });
  after(async () => {
    await placing?.close();
    await answering?.close();
    await redis?.dispose();
  });

  /**
   * Kills Redis for long enough that the clients' reconnect delay has grown (their next attempt
   * is about 1.5 s away), restarts it, and checks that `storage` is still offline: the state
   * the e2e test met when the CA's validation reached the instance that had not reconnected yet.
   */
  async function restartLeavingOffline(storage: RedisStorage): Promise<void> {
    await redis.kill();
    await sleep(1_600);
    await redis.restart();
    await assert.rejects(storage.get('probe'), /Redis is unreachable/, 'precondition: the client has not reconnected yet');
  }

  test('http-01: the validation is answered 200 once the connection is back (within the token retry budget, not 500)', { timeout: 30_000 }, async (t) => {
    const orderer = new Http01Solver(placing, silentLogger());
    const responder = new Http01Solver(answering, silentLogger());
    const server = await listen((req, res) => responder.handle(req, res));
    t.after(() => server.close());
    await orderer.present('name.test', 'tok-httpxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx', 'tok-httpxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.thumbprint');

    await restartLeavingOffline(answering);
    const started = Date.now();
    const answer = await validate(server, 'tok-httpxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx');
    const elapsed = Date.now() - started;
    assert.deepEqual(answer, { status: 200, body: 'tok-httpxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.thumbprint' }, 'answered from Redis, not 500');
    // The 200 already proves the retries (5 s budget) found Redis back; this only rules out a
    // hang, with room for a loaded machine.
    assert.ok(elapsed < 15_000, `answered after ${elapsed} ms`);
  });

  test('http-01: a token presented during the reconnect is stored once Redis is back', { timeout: 30_000 }, async () => {
    const orderer = new Http01Solver(placing, silentLogger());
    await restartLeavingOffline(placing);
    const started = Date.now();
    await orderer.present('name.test', 'tok-writexxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx', 'tok-writexxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.thumbprint');
    assert.ok(Date.now() - started < 15_000, 'no hang (the retries have a 5 s budget)');
    await until(async () => (await answering.get(keys.http01Token('tok-writexxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx')))?.toString() === 'tok-writexxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.thumbprint', 5_000);
  });

  test('tls-alpn-01: the validation handshake gets the challenge certificate once the connection is back', { timeout: 30_000 }, async () => {
    const orderer = new TlsAlpn01Solver(placing);
    const responder = new TlsAlpn01Solver(answering);
    await orderer.present('alpn.test', 'tok-alpn', 'tok-alpn.thumbprint');
    await restartLeavingOffline(answering);
    const started = Date.now();
    assert.ok(await responder.contextFor('alpn.test'), 'challenge certificate read from Redis');
    assert.ok(Date.now() - started < 15_000, 'no hang (the retries have a 5 s budget)');
  });
});

async function until(fn: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await fn()) return;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) assert.fail(`not within ${timeoutMs} ms`);
    await sleep(50);
  }
}
