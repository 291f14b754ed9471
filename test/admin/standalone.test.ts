// The admin API started on its own (issue 14): a file storage in a temp dir, a domain registry
// and a certificate manager with a stand-in issuer, no gateway, no listeners, no Redis, no CA.
// Bindings, issuance through the manager, certificate status and deletion, readiness, auth.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { startAdminServer } from '../../src/admin/server.ts';
import { silentLogger } from '../../src/util/log.ts';
import { adminCall } from '../support/admin.ts';
import { adminSection, standalone } from '../support/standalone-admin.ts';

const TOKEN = 'standalone-token-0123456789';

describe('admin API without a gateway', () => {
  test('bind a name, issue through the manager, read its status, unbind it (the certificate goes too)', async (t) => {
    const { server, issuer } = await standalone(t);
    const call = (method: string, path: string, body?: unknown) => adminCall(server.port, method, path, { token: TOKEN, ...(body === undefined ? {} : { body }) });

    assert.equal((await call('PUT', '/v1/domains/shop.example.com', { tenant: 't1' })).status, 201);
    const binding = await call('GET', '/v1/domains/shop.example.com');
    assert.equal(binding.status, 200);
    assert.equal((binding.json as { tenant: string }).tenant, 't1');
    assert.equal((await call('GET', '/v1/certificates/shop.example.com')).status, 404);

    const issued = await call('POST', '/v1/domains/shop.example.com/issue');
    assert.equal(issued.status, 200, issued.body);
    assert.deepEqual(issuer.calls, ['shop.example.com']);
    const status = await call('GET', '/v1/certificates/shop.example.com');
    assert.equal(status.status, 200);
    assert.equal((status.json as { ca: string; names: string[] }).ca, 'stand-in-ca');
    assert.deepEqual((status.json as { names: string[] }).names, ['shop.example.com']);

    // An unbound name: the registry-only policy denies it, and the CA is never asked.
    assert.equal((await call('POST', '/v1/domains/other.example.com/issue')).status, 403);
    assert.deepEqual(issuer.calls, ['shop.example.com']);

    assert.equal((await call('DELETE', '/v1/domains/shop.example.com')).status, 204);
    assert.equal((await call('GET', '/v1/domains/shop.example.com')).status, 404);
    assert.equal((await call('GET', '/v1/certificates/shop.example.com')).status, 404);
  });

  test('a disabled binding is neither issued nor renewed (409): either would serve it again from memory', async (t) => {
    const { server, issuer, cache } = await standalone(t);
    const call = (method: string, path: string, body?: unknown) => adminCall(server.port, method, path, { token: TOKEN, ...(body === undefined ? {} : { body }) });
    assert.equal((await call('PUT', '/v1/domains/off.example.com', {})).status, 201);
    assert.equal((await call('POST', '/v1/domains/off.example.com/issue')).status, 200);
    assert.equal((await call('PUT', '/v1/domains/off.example.com', { status: 'disabled' })).status, 200);
    cache.delete('off.example.com'); // as the bus does on every instance when a binding is disabled

    const issue = await call('POST', '/v1/domains/off.example.com/issue');
    assert.equal(issue.status, 409, issue.body);
    assert.match(issue.body, /off\.example\.com is disabled/);
    const renew = await call('POST', '/v1/certificates/off.example.com/renew');
    assert.equal(renew.status, 409, renew.body);
    assert.equal(cache.get('off.example.com'), undefined, 'not back in memory');
    assert.deepEqual(issuer.calls, ['off.example.com'], 'no second order');

    assert.equal((await call('PUT', '/v1/domains/off.example.com', { status: 'active' })).status, 200);
    assert.equal((await call('POST', '/v1/domains/off.example.com/issue')).status, 200);
    assert.deepEqual(issuer.calls, ['off.example.com'], 'active again: served from storage, no order');
  });

  test('the token is required (401 with a challenge); health is open; readiness asks storage and listenersUp', async (t) => {
    let up = true;
    const { server } = await standalone(t, adminSection({ token: TOKEN }), { listenersUp: () => up });
    const denied = await adminCall(server.port, 'GET', '/v1/domains');
    assert.equal(denied.status, 401);
    assert.match(String(denied.headers['www-authenticate']), /^Bearer/);
    assert.equal((await adminCall(server.port, 'GET', '/v1/domains', { token: TOKEN })).status, 200);
    assert.equal((await adminCall(server.port, 'GET', '/healthz')).status, 200);
    assert.equal((await adminCall(server.port, 'GET', '/readyz')).status, 200);
    up = false;
    const notReady = await adminCall(server.port, 'GET', '/readyz');
    assert.equal(notReady.status, 503);
    assert.match(notReady.body, /listeners are not up/);
  });

  test('admin.maxEventClients from the admin section caps the event streams (503 over it)', async (t) => {
    const { server } = await standalone(t, adminSection({ token: TOKEN, maxEventClients: 1 }));
    const first = await openStream(server.port);
    t.after(() => first.destroy());
    const second = await adminCall(server.port, 'GET', '/v1/events', { token: TOKEN });
    assert.equal(second.status, 503);
    assert.match(second.body, /admin\.maxEventClients \(1\)/);
  });

  test('a non-loopback address without a token is refused before anything listens', async () => {
    const logger = silentLogger();
    await assert.rejects(
      startAdminServer({ host: '0.0.0.0', port: 0 }, adminSection(), { logger } as unknown as Parameters<typeof startAdminServer>[2]),
      /not a loopback address, and there is no admin token/,
    );
  });
});

/** Opens GET /v1/events and resolves once its headers arrived (the stream counts as a client). */
async function openStream(port: number): Promise<import('node:http').IncomingMessage> {
  const { request } = await import('node:http');
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/v1/events', headers: { authorization: `Bearer ${TOKEN}` }, agent: false }, (res) => {
      assert.equal(res.statusCode, 200);
      resolve(res);
    });
    req.on('error', reject);
    req.end();
  });
}
