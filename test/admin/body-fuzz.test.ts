// Property-based tests (fast-check, fixed seed, bounded runs) of the admin API's request bodies,
// against a real gateway (file storage; its ACME directory is never contacted): whatever body
// PUT /v1/domains/{name} and the other calls get, JSON or not, well-typed or not, the answer is a
// 2xx or a 4xx carrying a JSON error, never a 5xx, and the process keeps serving; a valid body
// round-trips through GET. A failure prints the seed and the counterexample (fast-check's own
// report), so `fc.assert(..., { seed, path })` replays it.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { parseConfig } from '../../src/config/load.ts';
import { silentLogger } from '../../src/util/log.ts';
import { startGateway, type Gateway } from '../../src/gateway/index.ts';
import { adminCall, type AdminResult } from '../support/admin.ts';
import { freePort } from '../support/ports.ts';
import { tmpDir } from '../support/tmp.ts';

const TOKEN = 'fuzz-token-0123456789abcdef';
const SEED = 42;
const RUNS = 150;

/** 2xx, or 4xx with a JSON `{ error: string }`; anything else (5xx, a dropped socket) fails. */
function assertAnswered(res: AdminResult, what: string): void {
  assert.ok(res.status >= 200 && res.status < 500, `${what}: status ${res.status}: ${res.body}`);
  if (res.status >= 400) {
    assert.equal(typeof (res.json as { error?: unknown } | undefined)?.error, 'string', `${what}: a 4xx carries a JSON error: ${res.body}`);
  }
}

/** Values the binding fields could plausibly (or implausibly) carry. */
const fieldValue = fc.oneof(
  fc.string(),
  fc.string({ unit: 'binary', maxLength: 300 }),
  fc.constantFrom('http://10.0.0.7:8080', 'https://[::1]:8443', 'http://user:pw@h:1', 'ftp://x', 'http://h/path', 'active', 'disabled', ''),
  fc.webUrl(),
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.string(), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 5 }), fc.string({ maxLength: 5 }), { maxKeys: 3 }),
);

/** Objects shaped like a binding body, with wrong types, unknown keys and prototype keys mixed in. */
const bindingLike = fc.dictionary(fc.oneof(fc.constantFrom('upstream', 'tenant', 'label', 'status', '__proto__', 'constructor', 'toString'), fc.string({ maxLength: 10 })), fieldValue, { maxKeys: 5 });

const validBody = fc.record(
  {
    upstream: fc.constantFrom('http://10.0.0.7:8080', 'https://backend.internal:8443', 'http://[::1]:9000', 'http://127.0.0.1'),
    tenant: fc.string({ minLength: 1, maxLength: 200 }),
    label: fc.string({ unit: 'binary', minLength: 1, maxLength: 200 }),
    status: fc.constantFrom('active', 'disabled'),
  },
  { requiredKeys: [] },
);

describe('admin API bodies, fuzzed', () => {
  let gateway: Gateway;
  let port: number;
  const cleanups: Array<() => Promise<unknown>> = [];
  let n = 0;
  /** A fresh, valid name per run, so runs do not depend on each other. */
  const nextName = () => `f${n++}.fuzz.example`;

  before(async () => {
    const dir = await tmpDir({ after: (fn) => void cleanups.push(fn as () => Promise<unknown>) }, 'certgate-fuzz-');
    const config = parseConfig(
      {
        listen: { https: `127.0.0.1:${await freePort()}`, http: `127.0.0.1:${await freePort()}`, admin: '127.0.0.1:0' },
        storage: { file: { path: dir } },
        acme: { directory: 'https://127.0.0.1:9/dir' },
        onDemand: { registry: true },
        // The valid upstreams below include loopback, which the default allow-list refuses.
        proxy: { upstreamAllow: ['10.0.0.0/8', '127.0.0.0/8', '::1'] },
        admin: { token: TOKEN },
        log: { level: 'silent' },
      },
      { baseDir: dir },
    );
    gateway = await startGateway(config, { logger: silentLogger() });
    port = gateway.adminPort!;
  });
  after(async () => {
    await gateway?.close();
    for (const cleanup of cleanups) await cleanup();
  });

  test('PUT /v1/domains/{name}: any JSON value, binding-shaped or not: 2xx or a 4xx JSON error, never 5xx', async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.jsonValue(), bindingLike), async (body) => {
        const res = await adminCall(port, 'PUT', `/v1/domains/${nextName()}`, { token: TOKEN, rawBody: JSON.stringify(body) ?? 'null' });
        assertAnswered(res, `PUT ${JSON.stringify(body)}`);
      }),
      { seed: SEED, numRuns: RUNS },
    );
  });

  test('PUT /v1/domains/{name}: bodies that are not JSON, any content type: 2xx or a 4xx JSON error, never 5xx', async () => {
    const rawBody = fc.oneof(
      fc.string(),
      fc.string({ unit: 'binary', maxLength: 500 }),
      fc.json().map((j) => j.slice(0, Math.max(0, j.length - 1))), // truncated JSON
      fc.constantFrom('{', '[', '{"upstream":', 'nul', '\u0000', '\ufeff{}', '{"status":"active"}{"x":1}', ' '.repeat(1000)),
    );
    const contentType = fc.constantFrom('application/json', 'application/json; charset=utf-8', 'APPLICATION/JSON', 'text/plain', 'application/x-www-form-urlencoded', 'application/jsonp', '');
    await fc.assert(
      fc.asyncProperty(rawBody, contentType, async (body, type) => {
        const res = await adminCall(port, 'PUT', `/v1/domains/${nextName()}`, { token: TOKEN, rawBody: body, contentType: type });
        assertAnswered(res, `PUT ${JSON.stringify(body)} as ${JSON.stringify(type)}`);
      }),
      { seed: SEED, numRuns: RUNS },
    );
  });

  test('any name in the path, any body, on every body-carrying method: 2xx or a 4xx JSON error, never 5xx', async () => {
    const name = fc.oneof(fc.string({ maxLength: 80 }), fc.domain(), fc.constantFrom('..', '%', '%zz', 'xn--', 'a..b', '*.x.example', 'localhost', '127.0.0.1', 'A.EXAMPLE.COM.'));
    const method = fc.constantFrom('PUT', 'DELETE', 'PATCH', 'POST', 'GET');
    const endpoint = fc.constantFrom('/v1/domains/', '/v1/certificates/');
    await fc.assert(
      fc.asyncProperty(method, endpoint, name, fc.oneof(fc.jsonValue(), bindingLike), async (m, base, host, body) => {
        const res = await adminCall(port, m, `${base}${encodeURIComponent(host)}`, { token: TOKEN, rawBody: JSON.stringify(body) ?? 'null' });
        assertAnswered(res, `${m} ${base}${JSON.stringify(host)} ${JSON.stringify(body)}`);
      }),
      { seed: SEED, numRuns: RUNS },
    );
    // Still serving after all of it.
    assert.equal((await adminCall(port, 'GET', '/healthz')).status, 200);
  });

  test('a valid body round-trips: PUT answers 201 then 200 with the binding, GET returns the same', async () => {
    await fc.assert(
      fc.asyncProperty(validBody, validBody, async (first, second) => {
        const name = nextName();
        const created = await adminCall(port, 'PUT', `/v1/domains/${name}`, { token: TOKEN, body: first });
        assert.equal(created.status, 201, created.body);
        const replaced = await adminCall(port, 'PUT', `/v1/domains/${name}`, { token: TOKEN, body: second });
        assert.equal(replaced.status, 200, replaced.body);
        const got = await adminCall(port, 'GET', `/v1/domains/${name}`, { token: TOKEN });
        assert.equal(got.status, 200, got.body);
        const binding = got.json as Record<string, unknown>;
        assert.deepEqual(binding, replaced.json);
        assert.equal(binding.name, name);
        // The legacy switch (status: active|disabled) is answered as enabled; status is the lifecycle.
        assert.equal(binding.enabled, (second.status ?? 'active') === 'active');
        assert.equal(binding.status, second.status === 'disabled' ? 'disabled' : 'pending');
        assert.equal(binding.tenant, second.tenant);
        assert.equal(binding.label, second.label);
        assert.equal(binding.upstream, second.upstream === undefined ? undefined : new URL(second.upstream).origin);
        assert.equal(binding.createdAt, (created.json as Record<string, unknown>).createdAt, 'createdAt kept on replace');
      }),
      { seed: SEED, numRuns: 100 },
    );
  });
});
