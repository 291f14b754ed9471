// Admin API without a CA: auth (401), validation (400 naming the field), paging 100k bindings
// seeded straight into Redis, health endpoints, the OpenAPI document, and the rule that a
// non-loopback admin address needs a token. The gateway is real (Redis storage); its ACME
// directory is never contacted by these calls.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { parseConfig } from '../../src/config/load.ts';
import { silentLogger } from '../../src/util/log.ts';
import { registryKey, type DomainBinding } from '../../src/policy/registry.ts';
import { startGateway, type Gateway } from '../../src/gateway/index.ts';
import { RedisStorage } from '../../src/storage/redis/store.ts';
import { adminCall, openEvents } from '../support/admin.ts';
import { freePort } from '../support/ports.ts';
import { startRedis, type RedisHandle } from '../support/redis.ts';
import { tmpDir } from '../support/tmp.ts';
import { plainGet } from '../support/clients.ts';

const TOKEN = 'test-token-0123456789abcdef';

const rawGet = (port: number, path: string, headers: Record<string, string>) => plainGet(port, path, { headers });

async function gatewayOn(redis: RedisHandle, prefix: string, baseDir: string, extra: { listen?: object; admin?: object } = {}): Promise<{ gateway: Gateway; storage: RedisStorage }> {
  const config = parseConfig(
    {
      listen: { https: `127.0.0.1:${await freePort()}`, http: `127.0.0.1:${await freePort()}`, admin: '127.0.0.1:0', ...extra.listen },
      storage: { redis: { url: redis.url, prefix } },
      acme: { directory: 'https://127.0.0.1:9/dir' },
      onDemand: { registry: true },
      admin: extra.admin ?? { token: TOKEN },
      log: { level: 'silent' },
    },
    { baseDir },
  );
  const storage = await RedisStorage.connect({ url: redis.url, prefix, logger: silentLogger() });
  try {
    const gateway = await startGateway(config, { storage, bus: storage, logger: silentLogger() });
    return { gateway, storage };
  } catch (err) {
    await storage.close();
    throw err;
  }
}

describe('admin API: auth, validation, paging, health', () => {
  let redis: RedisHandle;
  let gateway: Gateway;
  let storage: RedisStorage;
  let port: number;
  const cleanups: Array<() => Promise<unknown>> = [];

  before(async () => {
    delete process.env.CERTGATE_ADMIN_TOKEN;
    redis = await startRedis();
    ({ gateway, storage } = await gatewayOn(redis, 'admin-a:', await tmpDir({ after: (fn) => void cleanups.push(fn as () => Promise<unknown>) }, 'certgate-admin-')));
    port = gateway.adminPort!;
  });
  after(async () => {
    await gateway?.close();
    await storage?.close();
    await redis?.dispose();
    for (const cleanup of cleanups) await cleanup();
  });

  test('no token, a wrong token, a token of another length, a non-Bearer scheme: 401', async () => {
    for (const token of [undefined, 'test-token-0123456789abcdeX', 'short', TOKEN + 'x']) {
      const res = await adminCall(port, 'GET', '/v1/domains', token ? { token } : {});
      assert.equal(res.status, 401, `token ${String(token)}`);
      assert.match(res.headers['www-authenticate'] as string, /^Bearer/);
    }
    const basic = await adminCall(port, 'PUT', '/v1/domains/a.example.com', { body: {} });
    assert.equal(basic.status, 401);
    assert.equal((await adminCall(port, 'GET', '/v1/domains', { token: TOKEN })).status, 200);
  });

  test('health, readiness and the OpenAPI document need no token', async () => {
    assert.equal((await adminCall(port, 'GET', '/healthz')).status, 200);
    const ready = await adminCall(port, 'GET', '/readyz');
    assert.equal(ready.status, 200, ready.body);
    const doc = (await adminCall(port, 'GET', '/openapi.json')).json as { openapi: string; paths: Record<string, unknown>; components: { schemas: Record<string, { properties?: object }> } };
    assert.equal(doc.openapi, '3.1.0');
    for (const path of ['/v1/domains', '/v1/domains/{name}', '/v1/domains/{name}/issue', '/v1/certificates/{name}', '/v1/certificates/{name}/renew', '/v1/events', '/healthz', '/readyz']) {
      assert.ok(path in doc.paths, path);
    }
    assert.deepEqual(Object.keys(doc.components.schemas.BindingInput!.properties!).sort(), ['enabled', 'label', 'status', 'tenant', 'upstream']);
    // The certificate status carries the failures from the shared retry state, found or not.
    for (const schema of ['Certificate', 'NoCertificate']) {
      for (const key of ['attempts', 'lastError', 'nextRetryAt', 'givenUp']) assert.ok(key in doc.components.schemas[schema]!.properties!, `${schema}.${key}`);
    }
  });

  test('malformed bodies and parameters: 400 naming the field', async () => {
    const cases: Array<[string, string, { body?: unknown; rawBody?: string }, string]> = [
      ['PUT', '/v1/domains/a.example.com', { body: { upstream: 'ftp://127.0.0.1:21' } }, 'upstream'],
      ['PUT', '/v1/domains/a.example.com', { body: { upstream: 'http://127.0.0.1:8080/path' } }, 'upstream'],
      // proxy.upstreamAllow unset: no loopback, link-local (cloud metadata) or unspecified addresses.
      ['PUT', '/v1/domains/a.example.com', { body: { upstream: 'http://127.0.0.1:8080' } }, 'upstream'],
      ['PUT', '/v1/domains/a.example.com', { body: { upstream: 'http://169.254.169.254' } }, 'upstream'],
      ['PUT', '/v1/domains/a.example.com', { body: { upstream: 'https://[fe80::1]:8443' } }, 'upstream'],
      ['PUT', '/v1/domains/a.example.com', { body: { upstream: 'http://[::ffff:127.0.0.1]:8080' } }, 'upstream'],
      ['PUT', '/v1/domains/a.example.com', { body: { upstream: 'http://0.0.0.0:8080' } }, 'upstream'],
      ['PUT', '/v1/domains/a.example.com', { body: { status: 'paused' } }, 'status'],
      ['PUT', '/v1/domains/a.example.com', { body: { tenant: 42 } }, 'tenant'],
      ['PUT', '/v1/domains/a.example.com', { body: { upstrem: 'http://127.0.0.1:8080' } }, 'upstrem'],
      ['PUT', '/v1/domains/a.example.com', { rawBody: '{"upstream": ' }, 'body'],
      ['PUT', '/v1/domains/a.example.com', { body: ['http://127.0.0.1:8080'] }, 'body'],
      ['PUT', '/v1/domains/127.0.0.1', { body: {} }, 'name'],
      ['PUT', '/v1/domains/localhost', { body: {} }, 'name'],
      // xn-- labels must be valid punycode that round-trips (IDNA 2008 / UTS 46).
      ['PUT', '/v1/domains/xn--a.example.com', { body: {} }, 'name'],
      ['PUT', '/v1/domains/xn--abc-.example.com', { body: {} }, 'name'],
      ['PUT', '/v1/domains/shop.xn--a-ecp.example', { body: {} }, 'name'],
      ['GET', '/v1/domains?limit=0', {}, 'limit'],
      ['GET', '/v1/domains?limit=abc', {}, 'limit'],
      ['GET', '/v1/domains?cursor=%2F..%2Fx', {}, 'cursor'],
      ['DELETE', '/v1/certificates/a.example.com?revoke=maybe', {}, 'revoke'],
    ];
    for (const [method, path, opts, field] of cases) {
      const res = await adminCall(port, method, path, { token: TOKEN, ...opts });
      assert.equal(res.status, 400, `${method} ${path} ${JSON.stringify(opts)}: ${res.body}`);
      const json = res.json as { error: string; field: string };
      assert.equal(json.field, field, res.body);
      assert.match(json.error, new RegExp(field === 'body' ? 'body|JSON' : field), res.body);
    }
    assert.equal((await adminCall(port, 'PUT', '/v1/domains/a.example.com', { token: TOKEN, rawBody: '{}', contentType: 'text/plain' })).status, 415);
    assert.equal((await adminCall(port, 'GET', '/v1/nothing', { token: TOKEN })).status, 404);
    assert.equal((await adminCall(port, 'GET', '/v1/domains/a.example.com', { token: TOKEN })).status, 404, 'nothing was bound by the bad calls');
  });

  test('IDN names: valid A-labels and Unicode (converted to A-labels) are accepted', async () => {
    for (const [path, name] of [
      ['/v1/domains/xn--bcher-kva.idn.example', 'xn--bcher-kva.idn.example'],
      [`/v1/domains/${encodeURIComponent('straße.idn.example')}`, 'xn--strae-oqa.idn.example'],
    ] as const) {
      const put = await adminCall(port, 'PUT', path, { token: TOKEN, body: {} });
      assert.equal(put.status, 201, put.body);
      assert.equal((put.json as DomainBinding).name, name);
      assert.equal((await adminCall(port, 'DELETE', `/v1/domains/${name}`, { token: TOKEN })).status, 204);
    }
  });

  test('PUT/GET/DELETE a binding', async () => {
    const put = await adminCall(port, 'PUT', '/v1/domains/Crud.Example.com', { token: TOKEN, body: { upstream: 'http://10.0.0.7:8080', tenant: 'acme' } });
    assert.equal(put.status, 201, put.body);
    assert.equal((put.json as DomainBinding).name, 'crud.example.com');
    assert.equal((await adminCall(port, 'PUT', '/v1/domains/crud.example.com', { token: TOKEN, body: { tenant: 'acme' } })).status, 200);
    const got = await adminCall(port, 'GET', '/v1/domains/crud.example.com', { token: TOKEN });
    assert.equal((got.json as DomainBinding).tenant, 'acme');
    assert.equal((await adminCall(port, 'DELETE', '/v1/domains/crud.example.com', { token: TOKEN })).status, 204);
    assert.equal((await adminCall(port, 'GET', '/v1/domains/crud.example.com', { token: TOKEN })).status, 404);
    assert.equal((await adminCall(port, 'DELETE', '/v1/domains/crud.example.com', { token: TOKEN })).status, 404);
    assert.equal((await adminCall(port, 'GET', '/v1/certificates/crud.example.com', { token: TOKEN })).status, 404);
  });

  test('100,000 bindings page through GET /v1/domains with cursors, each exactly once', { timeout: 600_000 }, async () => {
    const total = 100_000;
    const now = new Date().toISOString();
    const names = Array.from({ length: total }, (_, i) => `c${String(i).padStart(6, '0')}.bulk.example`);
    // Seeded straight through the storage layer, 1000 at a time, in the legacy shape (`status`
    // instead of `enabled`): stored records from before the switch was renamed must still read.
    const seedStarted = performance.now();
    for (let i = 0; i < total; i += 1000) {
      await Promise.all(
        names.slice(i, i + 1000).map((name) => storage.put(registryKey(name), JSON.stringify({ name, status: 'active', createdAt: now, updatedAt: now }))),
      );
    }
    const pagingStarted = performance.now();
    const seen = new Set<string>();
    let pages = 0;
    let cursor: string | null = null;
    do {
      const res = await adminCall(port, 'GET', `/v1/domains?limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`, { token: TOKEN });
      assert.equal(res.status, 200, res.body);
      const page = res.json as { items: DomainBinding[]; nextCursor: string | null };
      for (const item of page.items) {
        assert.ok(!seen.has(item.name), `${item.name} seen twice`);
        seen.add(item.name);
      }
      pages++;
      cursor = page.nextCursor;
    } while (cursor !== null);
    process.stdout.write(`# seeded ${total} in ${Math.round(pagingStarted - seedStarted)} ms, paged in ${Math.round(performance.now() - pagingStarted)} ms\n`);
    assert.equal(seen.size, total);
    assert.ok(pages === 100 || pages === 101, `pages ${pages}`);
    assert.deepEqual([...seen].slice(0, 3), names.slice(0, 3), 'name order');
  });

  test('/v1/events: an authorised stream gets registry changes; unauthorised gets 401', async () => {
    const denied = await adminCall(port, 'GET', '/v1/events');
    assert.equal(denied.status, 401);
    const events = await openEvents(port, TOKEN);
    try {
      assert.equal(events.status, 200);
      await adminCall(port, 'PUT', '/v1/domains/events.example.com', { token: TOKEN, body: {} });
      const bound = await events.waitFor((e) => e.event === 'domain-bound', 5000);
      assert.equal(bound.data.name, 'events.example.com');
      await adminCall(port, 'DELETE', '/v1/domains/events.example.com', { token: TOKEN });
      await events.waitFor((e) => e.event === 'domain-unbound', 5000);
      await events.waitFor((e) => e.event === 'deleted' && e.data.domain === 'events.example.com', 5000);
    } finally {
      events.close();
    }
  });
});

describe('admin API start-up rules', () => {
  let redis: RedisHandle;
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    await redis?.dispose();
  });

  test('a non-loopback admin address without a token refuses to start, naming the fix', async (t) => {
    delete process.env.CERTGATE_ADMIN_TOKEN;
    await assert.rejects(
      gatewayOn(redis, 'admin-b:', await tmpDir(t, 'certgate-admin-'), { listen: { admin: '0.0.0.0:0' }, admin: {} }),
      /admin\.token.*CERTGATE_ADMIN_TOKEN/,
    );
  });

  test('admin.maxEventClients: one stream over the cap gets 503 with a JSON error naming the key; a freed slot is taken again', async (t) => {
    delete process.env.CERTGATE_ADMIN_TOKEN;
    const capped = await gatewayOn(redis, 'admin-e:', await tmpDir(t, 'certgate-admin-'), { admin: { token: TOKEN, maxEventClients: 2 } });
    const port = capped.gateway.adminPort!;
    const open = [await openEvents(port, TOKEN), await openEvents(port, TOKEN)];
    try {
      assert.deepEqual(open.map((c) => c.status), [200, 200]);
      const over = await adminCall(port, 'GET', '/v1/events', { token: TOKEN });
      assert.equal(over.status, 503, over.body);
      assert.match((over.json as { error: string }).error, /admin\.maxEventClients \(2\)/);
      assert.equal(over.headers['retry-after'], '30');
      open.shift()!.close();
      // The server sees the close asynchronously: poll (no time bound but the test's own).
      for (;;) {
        const next = await openEvents(port, TOKEN);
        open.push(next);
        if (next.status === 200) break;
        open.pop()!.close();
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assert.equal(open.length, 2);
    } finally {
      for (const client of open) client.close();
      await capped.gateway.close();
      await capped.storage.close();
    }
  });

  test('CERTGATE_ADMIN_TOKEN is the token when set; loopback without any token is open', async (t) => {
    process.env.CERTGATE_ADMIN_TOKEN = 'from-the-environment-123456';
    const withEnv = await gatewayOn(redis, 'admin-c:', await tmpDir(t, 'certgate-admin-'), { listen: { admin: '0.0.0.0:0' }, admin: {} });
    try {
      assert.equal((await adminCall(withEnv.gateway.adminPort!, 'GET', '/v1/domains', { token: TOKEN })).status, 401);
      assert.equal((await adminCall(withEnv.gateway.adminPort!, 'GET', '/v1/domains', { token: 'from-the-environment-123456' })).status, 200);
    } finally {
      delete process.env.CERTGATE_ADMIN_TOKEN;
      await withEnv.gateway.close();
      await withEnv.storage.close();
    }
    const open = await gatewayOn(redis, 'admin-d:', await tmpDir(t, 'certgate-admin-'), { admin: {} });
    try {
      const port = open.gateway.adminPort!;
      assert.equal((await adminCall(port, 'GET', '/v1/domains')).status, 200);
      // Without a token: what a browser could be tricked into sending is refused.
      const rebound = await rawGet(port, '/v1/domains', { host: 'evil.example:2019' });
      assert.equal(rebound.status, 403);
      assert.match(rebound.body, /"field": "host"/);
      const crossSite = await rawGet(port, '/v1/domains', { host: '127.0.0.1:2019', origin: 'https://evil.example' });
      assert.equal(crossSite.status, 403);
      assert.match(crossSite.body, /"field": "origin"/);
      assert.equal((await rawGet(port, '/v1/domains', { host: `localhost:${port}` })).status, 200);
      assert.equal((await rawGet(port, '/healthz', { host: 'evil.example' })).status, 200, 'health stays open');
    } finally {
      await open.gateway.close();
      await open.storage.close();
    }
  });
});
