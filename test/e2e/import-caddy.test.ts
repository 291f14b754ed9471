// Issue 18 acceptance (move in from Caddy): Debian's `caddy` obtains certificates for 3 names
// from Pebble on demand (its file storage in a temp dir), is stopped; `certgate import caddy
// --from <its storage>` → certgate serves the same fingerprints with 0 new orders, and later
// renews them itself: through its renewal index, with the ACME account it took over from Caddy
// (Pebble creates no new account). Pebble's certificates live 120 s here, so certgate's
// maintainer finds them due (half-life for short-lived certificates) within the test.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadCertificate } from '../../src/issuance/store.ts';
import { caddyIssuerKey } from '../../src/migrate/caddy.ts';
import { FileStorage } from '../../src/storage/file/store.ts';
import { trackChild } from '../support/cleanup.ts';
import { peerCertificate } from '../support/clients.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { startPebbleOnFreePorts, type PebbleHandle } from '../support/pebble.ts';
import { CERTGATE_BIN, runToEnd } from '../support/process.ts';

const CADDY = '/usr/bin/caddy';
const NAMES = ['one.caddy.test', 'two.caddy.test', 'three.caddy.test'];

let pebble: PebbleHandle;
let httpsPort: number;
let httpPort: number;
let dir: string;
let caddyRoot: string;
let dataDir: string;
let ask: Server;
let caddy: ChildProcess | undefined;
let caddyOutput = '';
const caddyFingerprints = new Map<string, string>();
let gw: TestGateway | undefined;

before(async () => {
  assert.ok(existsSync(CADDY), 'Debian package caddy is installed');
  ({ pebble, httpsPort, httpPort } = await startPebbleOnFreePorts({ certificateValidityPeriod: 120 }));
  dir = await mkdtemp(join(tmpdir(), 'certgate-import-caddy-'));
  caddyRoot = join(dir, 'caddy-data');
  dataDir = join(dir, 'certgate-data');
  ask = createServer((_req, res) => res.writeHead(200).end('ok'));
  await new Promise<void>((resolve) => ask.listen(0, '127.0.0.1', resolve));
});

after(async () => {
  await gw?.close({ keepData: true });
  await stopCaddy();
  ask?.close();
  await pebble?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Caddy 2.6 with on-demand TLS from our Pebble (as bench/gateways.ts runs it), http-01 only. */
async function startCaddy(): Promise<void> {
  const askPort = (ask.address() as { port: number }).port;
  const config = {
    admin: { disabled: true, config: { persist: false } },
    storage: { module: 'file_system', root: caddyRoot },
    apps: {
      http: {
        http_port: httpPort,
        https_port: httpsPort,
        servers: {
          main: { listen: [`127.0.0.1:${httpsPort}`], protocols: ['h1'], routes: [{ handle: [{ handler: 'static_response', body: 'caddy' }] }], tls_connection_policies: [{}] },
          challenges: { listen: [`127.0.0.1:${httpPort}`], protocols: ['h1'], routes: [] },
        },
      },
      tls: {
        automation: {
          policies: [
            {
              issuers: [{ module: 'acme', ca: pebble.directoryUrl, trusted_roots_pem_files: [pebble.listenerCaPath], challenges: { 'tls-alpn': { disabled: true }, http: { alternate_port: httpPort } } }],
              on_demand: true,
              key_type: 'p256',
              disable_ocsp_stapling: true,
            },
          ],
          on_demand: { ask: `http://127.0.0.1:${askPort}/ask` },
        },
        disable_ocsp_stapling: true,
      },
    },
  };
  const file = join(dir, 'caddy.json');
  await writeFile(file, JSON.stringify(config));
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir, XDG_CONFIG_HOME: join(dir, 'xdg-config'), XDG_DATA_HOME: join(dir, 'xdg-data') };
  caddy = spawn(CADDY, ['run', '--config', file], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  trackChild(caddy);
  caddy.stdout!.on('data', (c: Buffer) => (caddyOutput += c.toString()));
  caddy.stderr!.on('data', (c: Buffer) => (caddyOutput += c.toString()));
  const deadline = Date.now() + 20_000;
  while (!/serving initial configuration/.test(caddyOutput)) {
    if (Date.now() > deadline || caddy.exitCode !== null) throw new Error(`caddy did not start:\n${caddyOutput}`);
    await sleep(100);
  }
}

async function stopCaddy(): Promise<void> {
  const child = caddy;
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 8_000);
  await exited;
  clearTimeout(timer);
}

test('Caddy obtains 3 certificates on demand from Pebble, is stopped; import → same fingerprints served with 0 orders; renewed later through certgate\'s index with the imported account', async () => {
  await startCaddy();
  for (const name of NAMES) caddyFingerprints.set(name, (await peerCertificate(httpsPort, name)).fingerprint256);
  await stopCaddy();
  assert.equal(pebble.ordersPlaced(), 3, `Caddy ordered one certificate per name\n${caddyOutput.slice(-3000)}`);
  assert.equal(pebble.accountsCreated(), 1, 'Caddy registered one account');
  assert.deepEqual((await readdir(join(caddyRoot, 'certificates', caddyIssuerKey(pebble.directoryUrl)))).sort(), [...NAMES].sort(), "CertMagic's layout, our issuer key");

  // certgate's config against the same Pebble; the import reads it like `run`.
  const configFile = join(dir, 'certgate.json');
  await writeFile(configFile, JSON.stringify({ storage: { file: { path: dataDir } }, acme: { directory: pebble.directoryUrl, trustedRoots: [pebble.listenerCaPath] }, log: { level: 'warn' } }));
  const imported = await runToEnd([CERTGATE_BIN, 'import', 'caddy', '--from', caddyRoot, '--config', configFile], { timeoutMs: 60_000 });
  assert.equal(imported.code, 0, imported.output);
  assert.match(imported.output, /3 read, 3 imported, 0 skipped/);
  assert.match(imported.output, /ACME account for \S+: imported/);
  const index = await FileStorage.open(dataDir);
  const indexed = await index.list('index/renewal/');
  await index.close();
  for (const name of NAMES) assert.ok(indexed.some((k) => k.endsWith(`/${name}`)), `${name} filed in certgate's renewal index`);

  // Serving only (role edge: no maintainer yet): the imported certificates, no order.
  gw = await startTestGateway({ pebble, httpsPort, httpPort, dataDir, config: { role: 'edge', onDemand: { allow: ['*.caddy.test'] } } });
  for (const name of NAMES) assert.equal((await peerCertificate(gw.gateway.httpsPort, name)).fingerprint256, caddyFingerprints.get(name), `${name}: Caddy's certificate`);
  assert.equal(pebble.ordersPlaced(), 3, 'no new order: served from the import');
  await gw.close({ keepData: true });
  gw = undefined;

  // A second import changes nothing.
  const again = await runToEnd([CERTGATE_BIN, 'import', 'caddy', '--from', caddyRoot, '--config', configFile], { timeoutMs: 60_000 });
  assert.match(again.output, /3 read, 0 imported, 3 skipped/);
  assert.match(again.output, /ACME account for \S+: kept/);

  // With the maintainer: renewed when due (half-life of 120 s), from certgate's own renewal index.
  gw = await startTestGateway({ pebble, httpsPort, httpPort, dataDir, config: { onDemand: { allow: ['*.caddy.test'] }, renewal: { checkInterval: '500ms' } } });
  const ca = gw.gateway.issuer.ca;
  const deadline = Date.now() + 150_000;
  for (;;) {
    const stored = await Promise.all(NAMES.map((n) => loadCertificate(gw!.storage.inner, [ca], n)));
    if (stored.every((b, i) => b && b.fingerprint256 !== caddyFingerprints.get(NAMES[i]!))) break;
    if (Date.now() > deadline) throw new Error(`not all renewed: ${stored.map((b) => b?.fingerprint256).join(', ')}`);
    await sleep(500);
  }
  assert.equal(pebble.ordersPlaced(), 6, 'one renewal order per name');
  assert.equal(pebble.accountsCreated(), 1, "renewed with Caddy's account, taken over: no new account");
  for (const name of NAMES) {
    const served = await peerCertificate(gw.gateway.httpsPort, name);
    assert.notEqual(served.fingerprint256, caddyFingerprints.get(name), `${name}: the renewed certificate is served`);
  }
});
