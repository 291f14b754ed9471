// The cloudflare provider against a local FAKE of Cloudflare's API v4 (no real Cloudflare can be
// reached here). The fake implements only the documented endpoints the provider uses:
//   GET    /zones?name=<zone name>                      (and GET /zones?per_page=1 for check())
//   POST   /zones/{zone_id}/dns_records
//   GET    /zones/{zone_id}/dns_records?type=TXT&name=<fqdn>
//   DELETE /zones/{zone_id}/dns_records/{dns_record_id}
// with Cloudflare's envelope ({ success, errors: [{ code, message }], result }), Bearer token
// authentication (code 10000 when wrong) and code 81058 for an identical record.
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { CloudflareProvider } from '../../../src/acme/dns/cloudflare.ts';
import { providerFailure as failure } from '../../support/dns.ts';

const TOKEN = 'test-token';
const BOUND_MS = 1500;
/** "Within the bound" on a slow, loaded machine: the bound plus a wide margin. */
const WITHIN_MS = BOUND_MS + 20_000;

interface FakeRecord {
  id: string;
  type: string;
  name: string;
  content: string;
  ttl: number;
}

/** The fake's state: zones by ID, their records, and every request it was sent. */
const zones = new Map<string, { name: string; records: FakeRecord[] }>([['zone-1', { name: 'platform.test', records: [] }]]);
const requests: string[] = [];
let nextId = 1;
/** When set, the fake stores TXT content in quotes (as Cloudflare does for some records). */
let quoteContent = false;

function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}
const ok = (res: ServerResponse, result: unknown): void => send(res, 200, { success: true, errors: [], result });
const fail = (res: ServerResponse, status: number, code: number, message: string): void =>
  send(res, status, { success: false, errors: [{ code, message }], result: null });

async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
  let body = '';
  for await (const chunk of req) body += String(chunk);
  const url = new URL(req.url ?? '/', 'http://fake');
  requests.push(`${req.method} ${url.pathname}${url.search}`);
  if (req.headers.authorization !== `Bearer ${TOKEN}`) return fail(res, 403, 10000, 'Authentication error');
  const parts = url.pathname.split('/').filter(Boolean); // zones, {id}, dns_records, {rid}
  if (req.method === 'GET' && parts.length === 1 && parts[0] === 'zones') {
    const name = url.searchParams.get('name');
    return ok(res, [...zones].filter(([, z]) => name === null || z.name === name).map(([id, z]) => ({ id, name: z.name })));
  }
  const zone = parts[0] === 'zones' && parts[2] === 'dns_records' ? zones.get(parts[1]!) : undefined;
  if (!zone) return fail(res, 404, 7003, 'Could not route to /zones/..., perhaps your object identifier is invalid?');
  if (req.method === 'POST' && parts.length === 3) {
    const rec = JSON.parse(body) as FakeRecord;
    const content = quoteContent ? `"${rec.content}"` : rec.content;
    if (zone.records.some((r) => r.type === rec.type && r.name === rec.name && r.content === content)) {
      return fail(res, 400, 81058, 'An identical record already exists.');
    }
    const created = { ...rec, content, id: `rec-${nextId++}` };
    zone.records.push(created);
    return ok(res, created);
  }
  if (req.method === 'GET' && parts.length === 3) {
    const [type, name] = [url.searchParams.get('type'), url.searchParams.get('name')];
    return ok(res, zone.records.filter((r) => r.type === type && r.name === name));
  }
  if (req.method === 'DELETE' && parts.length === 4) {
    const at = zone.records.findIndex((r) => r.id === parts[3]);
    if (at < 0) return fail(res, 404, 81044, 'Record does not exist.');
    zone.records.splice(at, 1);
    return ok(res, { id: parts[3] });
  }
  fail(res, 405, 10405, 'Method not allowed');
}

let server: Server;
let baseUrl: string;
before(async () => {
  server = createServer((req, res) => void handle(req, res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => new Promise<void>((resolve) => server.close(() => resolve())));

function provider(apiToken = TOKEN, url = baseUrl): CloudflareProvider {
  return new CloudflareProvider({ apiToken }, { baseUrl: url, timeoutMs: BOUND_MS });
}
function values(name: string): string[] {
  return zones.get('zone-1')!.records.filter((r) => r.name === name).map((r) => r.content.replace(/^"|"$/g, '')).sort();
}

describe("cloudflare provider against a local fake of Cloudflare's API v4 (GET /zones?name=, POST/GET/DELETE /zones/{zone_id}/dns_records)", () => {
  test('present two values at one name keeps both; cleanup of one leaves the other', async () => {
    const p = provider();
    const name = '_acme-challenge.alice.platform.test';
    requests.length = 0;
    await p.present(name, 'one');
    await p.present(name, 'two');
    await p.present(name, 'two'); // identical record (81058): success
    assert.deepEqual(values(name), ['one', 'two']);
    await p.cleanup(name, 'one');
    assert.deepEqual(values(name), ['two']);
    await p.cleanup(name, 'two');
    await p.cleanup(name, 'two'); // already gone: success
    assert.deepEqual(values(name), []);
    // The zone was found by name, walking up from the record's name, and remembered.
    assert.deepEqual(requests.slice(0, 4), [
      'GET /zones?name=_acme-challenge.alice.platform.test',
      'GET /zones?name=alice.platform.test',
      'GET /zones?name=platform.test',
      'POST /zones/zone-1/dns_records',
    ]);
    assert.ok(requests.includes(`GET /zones/zone-1/dns_records?type=TXT&name=${encodeURIComponent(name)}`));
  });

  test('content returned in quotes is still matched on cleanup', async () => {
    quoteContent = true;
    try {
      await provider().present('_acme-challenge.platform.test', 'quoted');
      assert.equal(zones.get('zone-1')!.records.find((r) => r.name === '_acme-challenge.platform.test')?.content, '"quoted"');
      await provider().cleanup('_acme-challenge.platform.test', 'quoted');
      assert.deepEqual(values('_acme-challenge.platform.test'), []);
    } finally {
      quoteContent = false;
    }
  });

  test('a bad token, a zone the token cannot see and an API that never answers each fail clearly', async () => {
    const bad = await failure(() => provider('wrong').present('_acme-challenge.platform.test', 'x'));
    assert.equal(bad.err.step, 'zone');
    assert.match(bad.err.message, /HTTP 403: 10000 Authentication error/);
    const nozone = await failure(() => provider().present('_acme-challenge.other.example', 'x'));
    assert.equal(nozone.err.step, 'zone');
    assert.match(nozone.err.message, /_acme-challenge\.other\.example/);
    const silent = createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
      const hung = await failure(() => provider(TOKEN, url).present('_acme-challenge.platform.test', 'x'));
      assert.match(hung.err.message, new RegExp(`no answer within ${BOUND_MS} ms`));
      assert.ok(hung.ms < WITHIN_MS, `took ${hung.ms} ms`);
    } finally {
      silent.closeAllConnections();
      silent.close();
    }
  });

  test('check(): passes with the token, fails naming the API error without it', async () => {
    await provider().check();
    const { err } = await failure(() => provider('wrong').check());
    assert.equal(err.step, 'check');
    assert.match(err.message, /Authentication error/);
  });
});
