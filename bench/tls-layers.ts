// What each of Node's layers costs per warm full TLS 1.3 handshake, against openssl s_server:
// `node --import tsx bench/tls-layers.ts [rounds] [seconds] [variants] [concurrency]` (default 5
// rounds of 4 s, 8 handshakes at a time).
// Every variant serves one self-signed ECDSA P-256 certificate through an SNICallback that is a
// Map lookup (as certgate's cache hit is), to hs-client.ts (X25519, no resumption, no request).
// TLS_LAYERS_SEEDED=1 serves the bench's seeded leaf + CA instead (bench/seed.ts), and with
// TLS_LAYERS_NAMES=<n> the first n seeded names, handshaken round-robin (openssl serves name 0's
// certificate whatever the SNI, as in the bench). Each variant gets `seconds` × 3 of unmeasured
// handshakes first.
//   openssl      `openssl s_server -www -tls1_3`: OpenSSL alone, no SNI callback
//   tls          node:tls Server: TLSWrap + the JS TLSSocket, nothing above it
//   https        node:https Server: + node:http's per-connection set-up
//   http2        node:http2 secure server with allowHTTP1 and an ALPNCallback (certgate's server)
//   *-semi16     the same under --max-semi-space-size=16 (certgate's young-generation cap)
//                (openssl and the Node servers are tls-reference.ts's, as the bench runs them)
//   caddy        Caddy (/usr/bin/caddy) with the certificate loaded from files, a static response
//   certgate     the compiled gateway (bench/build.ts), default config, the certificate stored on
//                its file storage for the name (served from its memory cache: a cache hit), no
//                admin API, log level warn
//   certgate-minsemi  the same with V8's young generation at its 16 MiB cap from the start
//                (--min-semi-space-size=16) instead of grown to it
//   certgate-admin  the same as certgate with the admin API on (Prometheus metrics counted) and
//                log level info, as the bench's gateways run
// With TLS_LAYERS_PROFILE=<dir>, each Node server writes a CPU profile into <dir>/<variant>
// (summarise with bench/profile.ts). Variants take turns within each round (order reversed every
// other round); server CPU is read from /proc. Prints one line per variant: the median µs of
// server CPU per handshake, and the median and range of its per-round ratio to openssl and to
// Caddy (figures of one round were measured seconds apart, so the ratios cancel most drift).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { handshakeLoad } from './loadgen.ts';
import { cpuMsOf, median, now, seededName, sleep } from './util.ts';
import { waitUntilServing, type GatewayKind } from './gateways.ts';
import { seededCertificateFiles, startNodeServer, startOpensslReference, type CertFiles, type NodeLayer } from './tls-reference.ts';
import { freePort } from '../test/support/ports.ts';

// TLS_LAYERS_SEEDED=1: the bench's seeded certificate 0 (leaf + the bench CA, bench/seed.ts)
// instead of a self-signed one, as the bench's handshake section serves.
const SEEDED = process.env.TLS_LAYERS_SEEDED === '1' || process.env.TLS_LAYERS_NAMES !== undefined;
const NAME_COUNT = Number(process.env.TLS_LAYERS_NAMES ?? 1);
const NAME = SEEDED ? seededName(0) : 'layers.bench.test';


/** A self-signed ECDSA P-256 certificate for NAME in `dir` (openssl CLI). */
function makeCertificate(dir: string): CertFiles[] {
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', `/CN=${NAME}`, '-addext', `subjectAltName=DNS:${NAME}`, '-days', '90', '-keyout', key, '-out', cert], { stdio: 'pipe' });
  if (r.status !== 0) throw new Error(`openssl req failed: ${r.stderr.toString()}`);
  return [{ name: NAME, cert, key }];
}

/** The bench's first NAME_COUNT seeded certificates (seeded here unless an earlier `npm run bench` did). */
async function seededCertificates(): Promise<CertFiles[]> {
  const { prepareSeed } = await import('./seed.ts');
  await prepareSeed(10_000);
  return seededCertificateFiles(NAME_COUNT);
}

/** A started variant: where it listens, the process whose CPU is read, and how to stop it. */
interface Running {
  port: number;
  pid: number;
  stop(): unknown;
}

/** node flags writing a CPU profile of `variant` when TLS_LAYERS_PROFILE is set. */
function profileFlags(variant: string): string[] {
  const dir = process.env.TLS_LAYERS_PROFILE;
  return dir ? ['--cpu-prof', `--cpu-prof-dir=${join(dir, variant)}`] : [];
}

/** The compiled gateway with the certificate stored for NAME (see the header). */
async function startCertgate(parent: string, files: CertFiles[], variant: string): Promise<Running> {
  const dir = join(parent, variant);
  const { buildCertgate } = await import('./build.ts');
  const { openStorage } = await import('../src/storage/open.ts');
  const { saveCertificate } = await import('../src/issuance/store.ts');
  const { caIdFromDirectory } = await import('../src/storage/keys.ts');
  const { silentLogger } = await import('../src/util/log.ts');
  const directory = 'https://127.0.0.1:9/dir';
  const storageDir = join(dir, 'storage');
  const { storage } = await openStorage({ file: { path: storageDir } } as never, silentLogger());
  for (const f of files) {
    const [certPem, keyPem] = [readFileSync(f.cert, 'utf8'), readFileSync(f.key, 'utf8')];
    await saveCertificate(storage, { domain: f.name, ca: caIdFromDirectory(directory), directory, certPem, keyPem, keyType: 'ecdsa-p256' });
  }
  await storage.close();
  const [https, http, admin] = [await freePort(), await freePort(), await freePort()];
  const withAdmin = variant === 'certgate-admin';
  const config = {
    listen: { https: `127.0.0.1:${https}`, http: `127.0.0.1:${http}`, admin: withAdmin ? `127.0.0.1:${admin}` : false },
    storage: { file: { path: storageDir } },
    acme: { directory },
    onDemand: { allow: files.map((f) => f.name) },
    proxy: { upstream: 'http://127.0.0.1:9' },
    log: { level: withAdmin ? 'info' : 'warn' },
  };
  const configFile = join(dir, 'certgate.json');
  writeFileSync(configFile, JSON.stringify(config));
  const build = await buildCertgate();
  const v8 = variant === 'certgate-minsemi' ? ['--max-semi-space-size=16', '--min-semi-space-size=16'] : [];
  const child = spawn(process.execPath, [...v8, ...profileFlags(variant), build.entry, 'run', '--config', configFile], { stdio: ['ignore', 'inherit', 'inherit'] });
  await waitServing(https, child, 'certgate');
  return { port: https, pid: child.pid!, stop: () => child.kill('SIGTERM') };
}

/** Caddy serving the certificate from files on a free port (no ACME, no admin API, no logs). */
async function startCaddy(dir: string, files: CertFiles[]): Promise<Running> {
  const port = await freePort();
  const config = {
    admin: { disabled: true, config: { persist: false } },
    logging: { logs: { default: { level: 'ERROR' } } },
    apps: {
      http: { servers: { s: { listen: [`127.0.0.1:${port}`], protocols: ['h1', 'h2'], routes: [{ handle: [{ handler: 'static_response', body: 'ok' }] }], tls_connection_policies: [{}], automatic_https: { disable: true } } } },
      tls: { certificates: { load_files: files.map((f) => ({ certificate: f.cert, key: f.key })) } },
    },
  };
  const configFile = join(dir, 'caddy.json');
  writeFileSync(configFile, JSON.stringify(config));
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir, XDG_CONFIG_HOME: join(dir, 'xdg-config'), XDG_DATA_HOME: join(dir, 'xdg-data') };
  const child = spawn('/usr/bin/caddy', ['run', '--config', configFile], { env, stdio: ['ignore', 'ignore', 'inherit'] });
  await waitServing(port, child, 'caddy');
  return { port, pid: child.pid!, stop: () => child.kill('SIGTERM') };
}

/** Resolves once `port` serves NAME's certificate; throws when `child` exits or after 10 s. */
async function waitServing(port: number, child: ChildProcess, kind: GatewayKind): Promise<void> {
  const target = { kind, spec: { httpsPort: port }, spawnedAt: now(), output: () => '(its output is this script\'s)', alive: () => child.exitCode === null && child.signalCode === null };
  await waitUntilServing(target, NAME, { timeoutMs: 10_000, intervalMs: 100 });
}

async function startVariant(variant: string, files: CertFiles[], dir: string): Promise<Running> {
  if (variant.startsWith('certgate')) return startCertgate(dir, files, variant);
  if (variant === 'caddy') return startCaddy(dir, files);
  if (variant === 'openssl') return startOpensslReference(files[0]);
  const [layer, flag] = variant.split('-') as [NodeLayer, string | undefined];
  return startNodeServer(files, { layer, nodeFlags: [...(flag === 'semi16' ? ['--max-semi-space-size=16'] : []), ...profileFlags(variant)] });
}

async function main(): Promise<void> {
  const rounds = Number(process.argv[2] ?? 5);
  const seconds = Number(process.argv[3] ?? 4);
  const variants = (process.argv[4] ?? 'openssl,tls,https,http2,http2-semi16').split(',');
  const concurrency = Number(process.argv[5] ?? 8);
  const dir = mkdtempSync(join(tmpdir(), 'certgate-tls-layers-'));
  const files = SEEDED ? await seededCertificates() : makeCertificate(dir);
  const load = (port: number, durationMs: number) => handshakeLoad({ port, ...(SEEDED ? { from: 0, count: NAME_COUNT } : { names: [NAME] }), mode: 'loop', concurrency, durationMs });
  const running = new Map<string, Running>();
  try {
    for (const v of variants) running.set(v, await startVariant(v, files, dir));
    for (const v of variants) await load(running.get(v)!.port, seconds * 3000); // warm-up
    const perHandshakeUs = new Map<string, number[]>(variants.map((v) => [v, []]));
    for (let round = 0; round < rounds; round++) {
      for (const v of round % 2 === 0 ? variants : [...variants].reverse()) {
        const server = running.get(v)!;
        const before = cpuMsOf(server.pid);
        const run = await load(server.port, seconds * 1000);
        await sleep(300); // the last closes
        const cpuMs = cpuMsOf(server.pid) - before;
        if (run.errors > 0) throw new Error(`${v}: ${run.errors} handshakes failed: ${run.errorSamples.join('; ')}`);
        perHandshakeUs.get(v)!.push((cpuMs * 1000) / run.handshakes);
      }
    }
    const ratios = (v: string, ref: string): string => {
      const refs = perHandshakeUs.get(ref);
      if (!refs) return '';
      const r = perHandshakeUs.get(v)!.map((x, i) => x / refs[i]!);
      return `  ${median(r).toFixed(2)}× ${ref} (${Math.min(...r).toFixed(2)}-${Math.max(...r).toFixed(2)})`;
    };
    for (const v of variants) {
      const values = perHandshakeUs.get(v)!;
      process.stdout.write(`${v.padEnd(13)} ${median(values).toFixed(0).padStart(5)} µs${ratios(v, 'openssl')}${ratios(v, 'caddy')}   rounds: ${values.map((x) => x.toFixed(0)).join(' ')}\n`);
    }
  } finally {
    for (const r of running.values()) await r.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
