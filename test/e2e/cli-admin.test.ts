// Issue 17, item 5: the CLI over the admin API. A gateway against real Pebble with the admin API
// behind a token; every command runs as its own `certgate` process (bin/certgate.js), its --json
// output parsed here and compared with what the admin API itself answers. Exit codes: 0 done,
// 1 the API answered an error, 2 usage/config, 3 admin API unreachable, 4 unauthorized, 5 not found.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { adminCall } from '../support/admin.ts';
import { httpsGet } from '../support/clients.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { startPebbleOnFreePorts, type PebbleHandle } from '../support/pebble.ts';
import { freePort } from '../support/ports.ts';
import { CERTGATE_BIN, runToEnd } from '../support/process.ts';
import { echoHandler, startUpstream, type FakeUpstream } from '../support/upstream.ts';

const TOKEN = 'cli-e2e-admin-token-0123456789';

interface Hostname {
  name: string;
  status: string;
  enabled?: boolean;
  upstream?: string;
  tenant?: string;
}

describe('certgate domains / certs against a running gateway', () => {
  let pebble: PebbleHandle;
  let gw: TestGateway;
  let upstream: FakeUpstream;
  let root: string;
  let httpsPort: number;
  let adminUrl: string;
  let adminPort: number;

  /** `certgate ARGS` with the token in the environment (unless env says otherwise), and no config from the test's own. */
  const cli = (args: string[], env: Record<string, string> = {}) =>
    runToEnd([CERTGATE_BIN, ...args], { env: { CERTGATE_ADMIN_TOKEN: TOKEN, CERTGATE_CONFIG: '', ...env }, timeoutMs: 120_000 });
  /** `certgate ARGS --admin URL --json`: exit 0 expected, stdout parsed. */
  const cliJson = async <T>(args: string[]): Promise<T> => {
    const { code, output, stdout } = await cli([...args, '--admin', adminUrl, '--json']);
    assert.equal(code, 0, `${args.join(' ')}\n${output}`);
    return JSON.parse(stdout) as T;
  };
  const api = async (method: string, path: string) => adminCall(adminPort, method, path, { token: TOKEN });

  before(async () => {
    let httpPort: number;
    ({ pebble, httpsPort, httpPort, root } = await startPebbleOnFreePorts());
    upstream = await startUpstream(echoHandler('customer'));
    gw = await startTestGateway({
      pebble,
      httpsPort,
      httpPort,
      config: { onDemand: { registry: true }, admin: { token: TOKEN }, proxy: { upstream: upstream.origin, upstreamAllow: ['127.0.0.0/8'] } },
    });
    adminPort = gw.gateway.adminPort!;
    adminUrl = `http://127.0.0.1:${adminPort}`;
  });

  after(async () => {
    await gw?.close();
    await upstream?.close();
    await pebble?.stop();
  });

  test('domains add binds, ls lists (JSON and table), status shows what the API answers', async () => {
    const added = await cliJson<Hostname>(['domains', 'add', 'shop.cli.test', '--upstream', upstream.origin, '--tenant', 'alice']);
    assert.equal(added.name, 'shop.cli.test');
    assert.equal(added.upstream, upstream.origin);
    assert.equal(added.tenant, 'alice');
    const off = await cliJson<Hostname>(['domains', 'add', 'off.cli.test', '--disabled']);
    assert.equal(off.status, 'disabled');

    const all = await cliJson<{ items: Hostname[]; nextCursor: string | null }>(['domains', 'ls', '--all']);
    assert.deepEqual(all.items.map((h) => h.name), ['off.cli.test', 'shop.cli.test']);
    assert.equal(all.nextCursor, null);
    // --json is the API's JSON as it is.
    assert.deepEqual(all, (await api('GET', '/v1/domains')).json);
    const first = await cliJson<{ items: Hostname[]; nextCursor: string | null }>(['domains', 'ls', '--limit', '1']);
    assert.deepEqual(first.items.map((h) => h.name), ['off.cli.test']);
    assert.notEqual(first.nextCursor, null, 'a next cursor: there is more');
    const disabled = await cliJson<{ items: Hostname[] }>(['domains', 'ls', '--status', 'disabled']);
    assert.deepEqual(disabled.items.map((h) => h.name), ['off.cli.test']);

    const table = await cli(['domains', 'ls', '--admin', adminUrl]);
    assert.equal(table.code, 0, table.output);
    const lines = table.stdout.trimEnd().split('\n');
    assert.match(lines[0]!, /^NAME +STATUS +ENABLED +EXPIRES +UPSTREAM +TENANT$/);
    const row = lines.find((l) => l.startsWith('shop.cli.test'));
    assert.ok(row, table.output);
    assert.equal(row.indexOf(added.status), lines[0]!.indexOf('STATUS'), `columns aligned:\n${table.output}`);
    assert.match(row, new RegExp(`${added.status} +yes +- +${upstream.origin.replace(/\./g, '\\.')} +alice$`));
    assert.match(lines.find((l) => l.startsWith('off.cli.test'))!, /^off\.cli\.test +disabled +no /);

    const status = await cliJson<Hostname>(['domains', 'status', 'shop.cli.test']);
    assert.deepEqual(status, (await api('GET', '/v1/domains/shop.cli.test')).json);
    const checked = await cliJson<Hostname>(['domains', 'status', 'shop.cli.test', '--check']);
    assert.equal(checked.name, 'shop.cli.test');
    const details = await cli(['domains', 'status', 'shop.cli.test', '--admin', adminUrl]);
    assert.equal(details.code, 0, details.output);
    assert.match(details.stdout, /^name: +shop\.cli\.test$/m);
    assert.match(details.stdout, new RegExp(`^status: +${status.status}$`, 'm'));
    assert.match(details.stdout, /^tenant: +alice$/m);
  });

  test('certs status and renew: after the first handshake, a renewal gives a new serial; the name is active', async () => {
    const name = 'shop.cli.test';
    const none = await cli(['certs', 'status', name, '--admin', adminUrl, '--json']);
    assert.equal(none.code, 5, `no certificate yet: not found\n${none.output}`);
    assert.equal((JSON.parse(none.stdout) as { attempts: number }).attempts, 0);
    assert.match(none.output, /shop\.cli\.test: read certificate failed: HTTP 404: no certificate for shop\.cli\.test/);

    assert.equal((await httpsGet(name, httpsPort, root)).status, 200);
    const issued = await cliJson<{ domain: string; serialNumber: string; notAfter: string; names: string[] }>(['certs', 'status', name]);
    assert.equal(issued.domain, name);
    assert.deepEqual(issued.names, [name]);
    const orders = pebble.ordersPlaced();
    const renewed = await cliJson<{ serialNumber: string }>(['certs', 'renew', name]);
    assert.notEqual(renewed.serialNumber, issued.serialNumber);
    assert.equal(pebble.ordersPlaced(), orders + 1);
    assert.equal((await cliJson<{ serialNumber: string }>(['certs', 'status', name])).serialNumber, renewed.serialNumber);

    const table = await cli(['certs', 'status', name, '--admin', adminUrl]);
    assert.equal(table.code, 0, table.output);
    assert.match(table.stdout, new RegExp(`^serial: +${renewed.serialNumber}$`, 'm'));
    assert.equal((await cliJson<Hostname>(['domains', 'status', name])).status, 'active');
  });

  test('domains rm unbinds; a second rm and a status of an unbound name exit 5', async () => {
    assert.deepEqual(await cliJson(['domains', 'rm', 'off.cli.test']), { name: 'off.cli.test', unbound: true });
    assert.equal((await api('GET', '/v1/domains/off.cli.test')).status, 404);
    const again = await cli(['domains', 'rm', 'off.cli.test', '--admin', adminUrl]);
    assert.equal(again.code, 5, again.output);
    assert.match(again.output, /off\.cli\.test: unbind failed: HTTP 404/);
    const status = await cli(['domains', 'status', 'nosuch.cli.test', '--admin', adminUrl, '--json']);
    assert.equal(status.code, 5, status.output);
    // With --json the API's error answer is on stdout too, the message on stderr.
    assert.equal((JSON.parse(status.stdout) as { error: string }).error, 'nosuch.cli.test is not bound');
    assert.match(status.output, /certgate: nosuch\.cli\.test: read status failed: HTTP 404: nosuch\.cli\.test is not bound/);
  });

  test('the API refusing a request exits 1 and says why', async () => {
    const bad = await cli(['domains', 'add', 'shop.cli.test', '--upstream', 'ftp://nowhere', '--admin', adminUrl]);
    assert.equal(bad.code, 1, bad.output);
    assert.match(bad.output, /shop\.cli\.test: bind failed: HTTP 400: upstream: must be an http\(s\) origin/);
  });

  test('wrong or missing token exits 4', async () => {
    const wrong = await cli(['domains', 'ls', '--admin', adminUrl], { CERTGATE_ADMIN_TOKEN: 'not-the-token' });
    assert.equal(wrong.code, 4, wrong.output);
    assert.match(wrong.output, /unauthorized \(HTTP 401\).*check CERTGATE_ADMIN_TOKEN/);
    const missing = await cli(['certs', 'renew', 'shop.cli.test', '--admin', adminUrl], { CERTGATE_ADMIN_TOKEN: '' });
    assert.equal(missing.code, 4, missing.output);
    assert.match(missing.output, /shop\.cli\.test: renew failed: unauthorized .*set CERTGATE_ADMIN_TOKEN/);
  });

  test('admin API down, or not an admin API, exits 3', async () => {
    const down = await cli(['domains', 'status', 'shop.cli.test', '--admin', `http://127.0.0.1:${await freePort()}`]);
    assert.equal(down.code, 3, down.output);
    assert.match(down.output, /shop\.cli\.test: read status failed: cannot reach the admin API at http:\/\/127\.0\.0\.1:\d+: .*ECONNREFUSED/);
    // The upstream answers every path with its echo, not the admin API's JSON error.
    const other = await cli(['domains', 'rm', 'shop.cli.test', '--admin', upstream.origin]);
    assert.equal(other.code, 3, other.output);
    assert.match(other.output, /is not a certgate admin API/);
  });

  test('a redirect is not followed (the token goes to no other place) and exits 3', async () => {
    const seen: Array<string | undefined> = [];
    const redirector = createServer((req, res) => {
      seen.push(req.url);
      // To itself: a followed redirect would show as a second request.
      res.writeHead(307, { location: `http://${req.headers.host}/followed` }).end();
    });
    await new Promise<void>((resolve) => redirector.listen(0, '127.0.0.1', resolve));
    try {
      const { code, output } = await cli(['domains', 'ls', '--admin', `http://127.0.0.1:${(redirector.address() as AddressInfo).port}`]);
      assert.equal(code, 3, output);
      assert.match(output, /answered HTTP 307, a redirect to http:\/\/127\.0\.0\.1:\d+\/followed \(not followed\)/);
      assert.deepEqual(seen, ['/v1/domains?limit=100'], 'one request, none after the redirect');
    } finally {
      await new Promise((resolve) => redirector.close(resolve));
    }
  });

  test('bad usage exits 2', async () => {
    for (const args of [
      ['domains', 'add'],
      ['domains', 'ls', '--limit', '0'],
      ['domains', 'ls', '--status', 'happy'],
      ['domains', 'frobnicate'],
      ['certs', 'renew', 'x.cli.test', '--token', TOKEN],
      ['domains', 'ls', '--admin', 'ftp://127.0.0.1:1'],
      ['domains', 'ls', '--config', '/nonexistent/certgate.yaml'],
    ]) {
      const { code, output } = await cli(args);
      assert.equal(code, 2, `${args.join(' ')}\n${output}`);
    }
  });

  test('--config / CERTGATE_CONFIG: the admin API address and token come from the config', async () => {
    const file = join(gw.dataDir, 'cli.yaml');
    await writeFile(file, `listen:\n  admin: "127.0.0.1:${adminPort}"\nadmin:\n  token: "${TOKEN}"\n`);
    for (const [args, env] of [
      [['--config', file], {}],
      [[], { CERTGATE_CONFIG: file }],
    ] as Array<[string[], Record<string, string>]>) {
      const { code, output, stdout } = await cli(['domains', 'ls', '--json', ...args], { CERTGATE_ADMIN_TOKEN: '', ...env });
      assert.equal(code, 0, output);
      assert.deepEqual((JSON.parse(stdout) as { items: Hostname[] }).items.map((h) => h.name), ['shop.cli.test']);
    }
    const off = join(gw.dataDir, 'cli-off.yaml');
    await writeFile(off, 'listen:\n  admin: false\n');
    const none = await cli(['domains', 'ls', '--config', off]);
    assert.equal(none.code, 2, none.output);
    assert.match(none.output, /listen\.admin is false/);
  });
});
