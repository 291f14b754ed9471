// The admin API's side of the dashboard (issue 17, item 4), without a browser: /ui/ and its
// assets need no token and carry a strict CSP and cache headers, while every /v1/ call still
// needs the token; the aggregates behind the charts (/v1/stats) and a name's recent events
// (/v1/events/recent); ?q= searching GET /v1/domains; assets prebuilt by `npm run build`.
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { Activity } from '../../src/admin/activity.ts';
import { UiAssets } from '../../src/admin/ui-assets.ts';
import { hourBucket } from '../../src/issuance/renewal-index.ts';
import { keys } from '../../src/storage/keys.ts';
import { adminCall } from '../support/admin.ts';
import { plainGet } from '../support/clients.ts';
import { standalone } from '../support/standalone-admin.ts';
import { tmpDir } from '../support/tmp.ts';

const TOKEN = 'standalone-token-0123456789';

describe('dashboard: the admin API side', () => {
  test('/ui/ and its assets load without the token, with CSP, content types and cache headers; /v1/* still needs the token', async (t) => {
    const { server } = await standalone(t);
    const page = await adminCall(server.port, 'GET', '/ui/');
    assert.equal(page.status, 200, page.body);
    assert.equal(page.headers['content-type'], 'text/html; charset=utf-8');
    assert.equal(page.headers['cache-control'], 'no-cache');
    const csp = page.headers['content-security-policy'] as string;
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /script-src 'self'(;|$)/);
    assert.match(csp, /connect-src 'self'(;|$)/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|https?:/);
    // No inline script: every <script> has a src, on this origin.
    assert.doesNotMatch(page.body, /<script(?![^>]*\ssrc=)[^>]*>/);
    const srcs = [...page.body.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
    assert.deepEqual(srcs.filter((s) => s !== 'data:,' && !/^app\.(js|css)\?v=[0-9a-f]{12}$/.test(s)), [], 'only versioned local assets');
    for (const [file, type] of [['app.js', 'text/javascript; charset=utf-8'], ['app.css', 'text/css; charset=utf-8']] as const) {
      const asset = await adminCall(server.port, 'GET', `/ui/${file}`);
      assert.equal(asset.status, 200, file);
      assert.equal(asset.headers['content-type'], type);
      assert.equal(asset.headers['cache-control'], 'public, max-age=31536000, immutable');
      assert.equal(asset.headers['x-content-type-options'], 'nosniff');
      assert.ok(asset.body.length > 1000, `${file} has content`);
    }
    // The bundle holds no CDN address.
    assert.doesNotMatch((await adminCall(server.port, 'GET', '/ui/app.js')).body, /https:\/\/(cdn|unpkg|fonts)\./);
    const revalidated = await plainGet(server.port, '/ui/', { headers: { 'if-none-match': page.headers.etag as string } });
    assert.equal(revalidated.status, 304);
    const redirect = await adminCall(server.port, 'GET', '/ui');
    assert.equal(redirect.status, 308);
    assert.equal(redirect.headers.location, '/ui/');
    assert.equal((await adminCall(server.port, 'GET', '/ui/secrets.json')).status, 404);
    assert.equal((await adminCall(server.port, 'POST', '/ui/', { body: {} })).status, 405);

    for (const path of ['/v1/domains', '/v1/stats', '/v1/events/recent', '/v1/events', '/v1/domains/a.example.com', '/v1/certificates/a.example.com']) {
      assert.equal((await adminCall(server.port, 'GET', path)).status, 401, `${path} without a token`);
    }
    assert.equal((await adminCall(server.port, 'GET', '/v1/stats', { token: TOKEN })).status, 200);
  });

  test('/v1/stats: expiring per day (a renewed name counted once) and issuances per hour; /v1/events/recent per name', async (t) => {
    const { server, storage } = await standalone(t);
    const call = (method: string, path: string, body?: unknown) => adminCall(server.port, method, path, { token: TOKEN, ...(body === undefined ? {} : { body }) });
    // A predecessor's entry left in the index (renewed, not yet cleaned up): 5 days from now.
    await storage.put(keys.expiryIndex(hourBucket(Date.now() + 5 * 86_400_000), 'one.example.com'), '{}');
    for (const name of ['one.example.com', 'two.example.com']) {
      assert.equal((await call('PUT', `/v1/domains/${name}`, {})).status, 201);
      assert.equal((await call('POST', `/v1/domains/${name}/issue`)).status, 200);
    }
    const renewed = await call('POST', '/v1/certificates/one.example.com/renew');
    assert.equal(renewed.status, 200, renewed.body);
    const stats = (await call('GET', '/v1/stats')).json as { expiringPerDay: Array<{ day: string; count: number }>; perHour: Array<{ hour: string; issued: number; renewed: number; failed: number }>; since: string };
    assert.equal(stats.expiringPerDay.length, 90);
    assert.equal(stats.expiringPerDay[0]!.day, new Date().toISOString().slice(0, 10));
    // The stand-in issuer's certificates last 30 days; the predecessor's entry is not counted.
    assert.equal(stats.expiringPerDay.reduce((sum, d) => sum + d.count, 0), 2);
    const notAfter = ((await call('GET', '/v1/certificates/one.example.com')).json as { notAfter: string }).notAfter;
    assert.deepEqual(stats.expiringPerDay.filter((d) => d.count > 0).map((d) => d.day), [notAfter.slice(0, 10)]);
    assert.equal(stats.perHour.length, 48);
    const totals = stats.perHour.reduce((sum, h) => ({ issued: sum.issued + h.issued, renewed: sum.renewed + h.renewed, failed: sum.failed + h.failed }), { issued: 0, renewed: 0, failed: 0 });
    assert.deepEqual(totals, { issued: 2, renewed: 1, failed: 0 });

    const recent = (await call('GET', '/v1/events/recent?domain=one.example.com')).json as { events: Array<{ type: string; domain: string }> };
    assert.deepEqual(
      recent.events.map((e) => e.type).filter((type) => type !== 'issuance-started'),
      ['renewed', 'issuance-succeeded', 'domain-bound'],
    );
    assert.ok(recent.events.every((e) => e.domain === 'one.example.com'));
    assert.equal((await call('GET', '/v1/events/recent?limit=0')).status, 400);
  });

  test('GET /v1/domains?q= finds names containing the text, paged with cursors', async (t) => {
    const { server } = await standalone(t);
    const call = (method: string, path: string, body?: unknown) => adminCall(server.port, method, path, { token: TOKEN, ...(body === undefined ? {} : { body }) });
    for (const name of ['a.alice.com', 'b.bob.com', 'c.alice.com', 'd.alice.org', 'e.carol.com']) assert.equal((await call('PUT', `/v1/domains/${name}`, {})).status, 201);
    const names = (res: { json: unknown }) => (res.json as { items: Array<{ name: string }> }).items.map((i) => i.name);
    const first = await call('GET', '/v1/domains?q=ALICE&limit=2');
    assert.deepEqual(names(first), ['a.alice.com', 'c.alice.com']);
    const cursor = (first.json as { nextCursor: string }).nextCursor;
    assert.equal(cursor, 'c.alice.com');
    assert.deepEqual(names(await call('GET', `/v1/domains?q=alice&limit=2&cursor=${cursor}`)), ['d.alice.org']);
    assert.deepEqual(names(await call('GET', '/v1/domains?q=nobody')), []);
    assert.equal((await call('GET', `/v1/domains?q=${'x'.repeat(254)}`)).status, 400);
  });

  test('assets prebuilt by `npm run build` (a ui/ folder) are served as they are, without bundling', async (t) => {
    const dir = join(await tmpDir(t, 'certgate-ui-'), 'ui');
    await mkdir(dir);
    await writeFile(join(dir, 'index.html'), '<!doctype html><title>prebuilt</title>');
    await writeFile(join(dir, 'app.js'), 'export {};');
    await writeFile(join(dir, 'app.css'), 'body{}');
    const { server } = await standalone(t, undefined, { ui: new UiAssets(dir) });
    assert.equal((await adminCall(server.port, 'GET', '/ui/')).body, '<!doctype html><title>prebuilt</title>');
    assert.equal((await adminCall(server.port, 'GET', '/ui/app.js')).body, 'export {};');
  });

  test('Activity keeps the newest events (a ring) and counts per UTC hour', () => {
    let now = Date.parse('2026-11-23T18:30:00Z');
    const activity = new Activity({ capacity: 3, hours: 4, now: () => now });
    for (let i = 0; i < 5; i++) activity.record('issuance-succeeded', { domain: `n${i}.example.com`, at: new Date(now).toISOString() });
    assert.deepEqual(activity.recent(undefined, 10).map((e) => e.domain), ['n4.example.com', 'n3.example.com', 'n2.example.com']);
    assert.deepEqual(activity.recent('n3.example.com', 10).length, 1);
    now += 2 * 3_600_000;
    activity.record('issuance-failed', { domain: 'x.example.com', at: new Date(now).toISOString() });
    assert.deepEqual(activity.perHour(3), [
      { hour: '2026-11-23T18', issued: 5, renewed: 0, failed: 0 },
      { hour: '2026-11-23T19', issued: 0, renewed: 0, failed: 0 },
      { hour: '2026-11-23T20', issued: 0, renewed: 0, failed: 1 },
    ]);
  });
});
