// Starts a real Pebble (Debian's /usr/bin/pebble 2.4) plus pebble-challtestsrv for one test.
// See /work/shared/pebble-notes.md for the traps this works around.
import { spawn, type ChildProcess } from 'node:child_process';
import { webcrypto } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import '../../src/acme/reflect-shim.ts';
import * as x509 from '@peculiar/x509';
import { Agent, request } from 'undici';
import { trackChild, trackDir, untrackDir } from './cleanup.ts';
import { freePort } from './ports.ts';

export interface PebbleOptions {
  /** Port Pebble's validator connects to for http-01 (the gateway's http listener). */
  httpPort: number;
  /** Port Pebble's validator connects to for tls-alpn-01 (the gateway's https listener). */
  tlsPort: number;
  /** Extra environment for Pebble, e.g. PEBBLE_WFE_NONCEREJECT; overrides the defaults. */
  env?: Record<string, string>;
  /** Lifetime of issued certificates, in seconds. */
  certificateValidityPeriod?: number;
  externalAccountBindingRequired?: boolean;
  /** kid -> base64url HMAC key. */
  externalAccountMACKeys?: Record<string, string>;
  /**
   * '127.0.0.1:<port>' of a DNS server the test started (test/support/bind9.ts) for Pebble to
   * validate and resolve against; pebble-challtestsrv is then not started (`challtestsrvUrl` is
   * empty and its mock DNS unusable).
   */
  dnsServer?: string;
}

export interface PebbleHandle {
  /** https://127.0.0.1:<port>/dir */
  directoryUrl: string;
  /** PEM of the throwaway CA that signed Pebble's own listener certificate. */
  listenerCaPem: string;
  /** The same, written to a file in the temp dir. */
  listenerCaPath: string;
  /** Issuing root from the management API (/roots/0), fetched once and cached. */
  rootPem(): Promise<string>;
  /** What Pebble says of the certificate with this (hex) serial: 'Valid' or 'Revoked' (management API). */
  certificateStatus(serialHex: string): Promise<string>;
  /** '127.0.0.1:<port>' of the DNS server Pebble asks (challtestsrv's, or `dnsServer`). */
  dnsAddress: string;
  /** 'http://127.0.0.1:<port>', pebble-challtestsrv's management API. */
  challtestsrvUrl: string;
  /** New orders Pebble accepted, counted from its log. */
  ordersPlaced(): number;
  /** Certificates Pebble issued, counted from its log. */
  certificatesIssued(): number;
  /** Accounts Pebble created (a newAccount for an existing key does not count), from its log. */
  accountsCreated(): number;
  /** Everything Pebble and challtestsrv printed. */
  output(): string;
  /** Kills both processes (by PID) and removes the temp dir. */
  stop(): Promise<void>;
}

const PEBBLE_BIN = '/usr/bin/pebble';
const CHALLTESTSRV_BIN = '/usr/bin/pebble-challtestsrv';
const SETPRIV_BIN = '/usr/bin/setpriv';
const HAVE_SETPRIV = existsSync(SETPRIV_BIN);
const START_TIMEOUT_MS = 10_000;

// Pebble 2.4 prints exactly one of each of these per event (found by experiment):
//   Added order "<order id>" to the db
//   Issued certificate serial <hex serial> for order <order id>
//   There are now <n> accounts in memory        (only when an account is created)
const ORDER_LINE = /Added order "[^"]+" to the db/;
const ISSUED_LINE = /Issued certificate serial [0-9a-f]+ for order \S+/;
const ACCOUNT_LINE = /There are now \d+ accounts in memory/;


async function distinctFreePorts(n: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < n) ports.add(await freePort());
  return [...ports];
}

function toPem(der: ArrayBuffer, label: string): string {
  const b64 = Buffer.from(der).toString('base64');
  return `-----BEGIN ${label}-----\n${b64.replace(/.{1,64}/g, '$&\n')}-----END ${label}-----\n`;
}

/** A throwaway CA and a localhost/127.0.0.1 certificate it signed, for Pebble's own listener. */
async function makeListenerCertificates(): Promise<{ caPem: string; certPem: string; keyPem: string }> {
  const crypto = webcrypto;
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const caKeys = (await crypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const now = Date.now();
  const notBefore = new Date(now - 60_000);
  const notAfter = new Date(now + 2 * 24 * 3600_000);
  const caName = `CN=certgate test listener CA ${Math.random().toString(16).slice(2, 8)}`;
  const ca = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: '01' + Buffer.from(crypto.getRandomValues(new Uint8Array(8))).toString('hex'),
      name: caName,
      notBefore,
      notAfter,
      keys: caKeys,
      signingAlgorithm: alg,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey, false, crypto),
      ],
    },
    crypto,
  );
  const leafKeys = (await crypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const leaf = await x509.X509CertificateGenerator.create(
    {
      serialNumber: '02' + Buffer.from(crypto.getRandomValues(new Uint8Array(8))).toString('hex'),
      subject: 'CN=localhost',
      issuer: ca.subject,
      notBefore,
      notAfter,
      publicKey: leafKeys.publicKey,
      signingKey: caKeys.privateKey,
      signingAlgorithm: alg,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
        new x509.SubjectAlternativeNameExtension([
          { type: 'dns', value: 'localhost' },
          { type: 'ip', value: '127.0.0.1' },
        ]),
        await x509.AuthorityKeyIdentifierExtension.create(ca, false, crypto),
      ],
    },
    crypto,
  );
  const keyPem = toPem(await crypto.subtle.exportKey('pkcs8', leafKeys.privateKey), 'PRIVATE KEY');
  return { caPem: ca.toString('pem') + '\n', certPem: leaf.toString('pem') + '\n', keyPem };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export async function startPebble(opts: PebbleOptions): Promise<PebbleHandle> {
  // The free ports are only free at the time they were picked; if another process took one
  // in between, start again with new ports.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(opts);
    } catch (err) {
      if (attempt >= 3 || !/address already in use/i.test(String(err))) throw err;
    }
  }
}

async function startOnce(opts: PebbleOptions): Promise<PebbleHandle> {
  const dir = await mkdtemp(join(tmpdir(), 'certgate-pebble-'));
  trackDir(dir);
  const children: ChildProcess[] = [];
  let out = '';
  let pebbleOut = '';
  let stopped = false;
  let agent: Agent | undefined;

  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await Promise.all(
      children.map(async (child) => {
        if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
        const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
        try {
          process.kill(child.pid, 'SIGKILL');
        } catch {
          return;
        }
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([exited, new Promise<void>((resolve) => (timer = setTimeout(resolve, 3000)))]);
        clearTimeout(timer);
      }),
    );
    await agent?.close().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
    untrackDir(dir);
  };

  const listenerCaPath = join(dir, 'listener-ca.pem');

  try {
    const { caPem, certPem, keyPem } = await makeListenerCertificates();
    agent = new Agent({ connect: { ca: caPem }, connections: 4 });
    const dispatcher = agent;
    const [acmePort, mgmtPort, dnsPort, ctMgmtPort] = (await distinctFreePorts(4)) as [number, number, number, number];
    const certPath = join(dir, 'listener-cert.pem');
    const keyPath = join(dir, 'listener-key.pem');
    await writeFile(listenerCaPath, caPem);
    await writeFile(certPath, certPem);
    await writeFile(keyPath, keyPem, { mode: 0o600 });

    const pebbleConfig: Record<string, unknown> = {
      listenAddress: `127.0.0.1:${acmePort}`,
      managementListenAddress: `127.0.0.1:${mgmtPort}`,
      certificate: certPath,
      privateKey: keyPath,
      httpPort: opts.httpPort,
      tlsPort: opts.tlsPort,
      ocspResponderURL: '',
      externalAccountBindingRequired: opts.externalAccountBindingRequired ?? false,
    };
    if (opts.externalAccountMACKeys) pebbleConfig.externalAccountMACKeys = opts.externalAccountMACKeys;
    if (opts.certificateValidityPeriod !== undefined) {
      pebbleConfig.certificateValidityPeriod = opts.certificateValidityPeriod;
    }
    const configPath = join(dir, 'pebble-config.json');
    await writeFile(configPath, JSON.stringify({ pebble: pebbleConfig }, null, 2));

    const launch = (bin: string, args: string[], env: NodeJS.ProcessEnv, tag: string): ChildProcess => {
      // setpriv execs the program (same PID) with PR_SET_PDEATHSIG, so it dies with this
      // process even when this process is SIGKILLed and no exit hook runs.
      const child = HAVE_SETPRIV
        ? spawn(SETPRIV_BIN, ['--pdeathsig', 'KILL', '--', bin, ...args], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] })
        : spawn(bin, args, { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
      children.push(child);
      trackChild(child);
      const onData = (chunk: Buffer): void => {
        const text = chunk.toString('utf8');
        out += text;
        if (tag === 'pebble') pebbleOut += text;
      };
      child.stdout?.on('data', onData);
      child.stderr?.on('data', onData);
      child.on('error', (err) => {
        out += `[${tag}] spawn error: ${err.message}\n`;
      });
      child.on('exit', (code, signal) => {
        if (!stopped) out += `[${tag}] exited with ${signal ?? code}\n`;
      });
      return child;
    };

    const ct = opts.dnsServer !== undefined ? undefined : launch(
      CHALLTESTSRV_BIN,
      [
        '-defaultIPv4', '127.0.0.1',
        '-defaultIPv6', '',
        '-http01', '',
        '-https01', '',
        '-tlsalpn01', '',
        '-dns01', `127.0.0.1:${dnsPort}`,
        '-management', `127.0.0.1:${ctMgmtPort}`,
      ],
      { PATH: process.env.PATH ?? '/usr/bin:/bin' },
      'challtestsrv',
    );
    const pebble = launch(
      PEBBLE_BIN,
      ['-config', configPath, '-dnsserver', opts.dnsServer ?? `127.0.0.1:${dnsPort}`],
      {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        PEBBLE_VA_NOSLEEP: '1',
        PEBBLE_WFE_NONCEREJECT: '0',
        PEBBLE_AUTHZREUSE: '0',
        ...opts.env,
      },
      'pebble',
    );

    const directoryUrl = `https://127.0.0.1:${acmePort}/dir`;
    const challtestsrvUrl = ct ? `http://127.0.0.1:${ctMgmtPort}` : '';
    const deadline = Date.now() + START_TIMEOUT_MS;
    const answers = async (url: string, wantOk: boolean): Promise<boolean> => {
      try {
        const res = await request(url, { method: 'GET', dispatcher, headersTimeout: 1000, bodyTimeout: 1000 });
        await res.body.dump();
        return wantOk ? res.statusCode === 200 : true;
      } catch {
        return false;
      }
    };
    let pebbleUp = false;
    let ctUp = ct === undefined;
    while (Date.now() < deadline) {
      for (const child of ct ? [pebble, ct] : [pebble]) {
        if (child.exitCode !== null || child.signalCode !== null) {
          throw new Error(`startPebble: a process exited during start-up\n${out}`);
        }
      }
      if (!pebbleUp) pebbleUp = await answers(directoryUrl, true);
      // Any HTTP answer (404 on /) means the management API listens.
      if (!ctUp) ctUp = await answers(`${challtestsrvUrl}/`, false);
      if (pebbleUp && ctUp) break;
      await sleep(50);
    }
    if (!pebbleUp || !ctUp) {
      throw new Error(
        `startPebble: ${pebbleUp ? 'challtestsrv' : 'Pebble'} did not answer within ${START_TIMEOUT_MS} ms\n${out}`,
      );
    }

    let rootCache: Promise<string> | undefined;
    const count = (re: RegExp): number => {
      let n = 0;
      for (const line of pebbleOut.split('\n')) if (re.test(line)) n++;
      return n;
    };

    return {
      directoryUrl,
      listenerCaPem: caPem,
      listenerCaPath,
      rootPem(): Promise<string> {
        rootCache ??= (async () => {
          const res = await request(`https://127.0.0.1:${mgmtPort}/roots/0`, { dispatcher });
          const text = await res.body.text();
          if (res.statusCode !== 200) throw new Error(`GET /roots/0: HTTP ${res.statusCode}: ${text}`);
          return text;
        })();
        rootCache.catch(() => {
          rootCache = undefined;
        });
        return rootCache;
      },
      async certificateStatus(serialHex: string): Promise<string> {
        const res = await request(`https://127.0.0.1:${mgmtPort}/cert-status-by-serial/${serialHex}`, { dispatcher });
        const text = await res.body.text();
        if (res.statusCode !== 200) throw new Error(`GET /cert-status-by-serial/${serialHex}: HTTP ${res.statusCode}: ${text}`);
        return (JSON.parse(text) as { Status: string }).Status;
      },
      dnsAddress: opts.dnsServer ?? `127.0.0.1:${dnsPort}`,
      challtestsrvUrl,
      ordersPlaced: () => count(ORDER_LINE),
      certificatesIssued: () => count(ISSUED_LINE),
      accountsCreated: () => count(ACCOUNT_LINE),
      output: () => out,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Pebble for one test file's gateways, as startPebbleOnFreePorts returns it. */
export interface PebbleOnFreePorts {
  pebble: PebbleHandle;
  /** Where Pebble validates tls-alpn-01: the HTTPS port the gateway under test must listen on. */
  httpsPort: number;
  /** Where Pebble validates http-01: the gateway's HTTP port. */
  httpPort: number;
  /** Pebble's issuing root (PEM), to verify what the gateway serves. */
  root: string;
  /** challtestsrv's mock DNS, which Pebble's validator asks (and the gateway, when pointed at it). */
  dns: MockDns;
}

/**
 * The usual e2e start: Pebble validating against two free ports, where the test then starts its
 * gateway (startTestGateway in gateway.ts), with its root fetched and its DNS at hand.
 */
export async function startPebbleOnFreePorts(opts: Omit<PebbleOptions, 'httpPort' | 'tlsPort'> = {}): Promise<PebbleOnFreePorts> {
  const [httpsPort, httpPort] = (await distinctFreePorts(2)) as [number, number];
  const pebble = await startPebble({ ...opts, httpPort, tlsPort: httpsPort });
  try {
    return { pebble, httpsPort, httpPort, root: await pebble.rootPem(), dns: mockDns(pebble.challtestsrvUrl) };
  } catch (err) {
    await pebble.stop();
    throw err;
  }
}

/**
 * pebble-challtestsrv's mock DNS, set through its management API (`challtestsrvUrl`). Names
 * with no record of their own answer A queries with the default IPv4 (127.0.0.1 here) and AAAA
 * queries with nothing.
 */
export interface MockDns {
  /** Replaces the A records of `host`. */
  setA(host: string, addresses: string[]): Promise<void>;
  clearA(host: string): Promise<void>;
  setAAAA(host: string, addresses: string[]): Promise<void>;
  clearAAAA(host: string): Promise<void>;
  setCname(host: string, target: string): Promise<void>;
  clearCname(host: string): Promise<void>;
  /** Every query for `host` answers SERVFAIL until cleared. */
  setServfail(host: string): Promise<void>;
  clearServfail(host: string): Promise<void>;
  /** Replaces the TXT records of `host` with one holding `value`. */
  setTxt(host: string, value: string): Promise<void>;
  clearTxt(host: string): Promise<void>;
  /** Adds CAA records (`tag` issue/issuewild/iodef, `value`) to `host`. */
  addCaa(host: string, policies: Array<{ tag: string; value: string }>): Promise<void>;
  clearCaa(host: string): Promise<void>;
}

const fqdn = (host: string): string => (host.endsWith('.') ? host : `${host}.`);

/** The MockDns of the challtestsrv whose management API is at `challtestsrvUrl`. */
export function mockDns(challtestsrvUrl: string): MockDns {
  const post = async (path: string, body: Record<string, unknown>): Promise<void> => {
    const res = await request(`${challtestsrvUrl}${path}`, { method: 'POST', body: JSON.stringify(body), headersTimeout: 5000, bodyTimeout: 5000 });
    const text = await res.body.text();
    if (res.statusCode !== 200) throw new Error(`challtestsrv ${path}: HTTP ${res.statusCode}: ${text}`);
  };
  return {
    async setA(host, addresses) {
      await post('/clear-a', { host });
      await post('/add-a', { host, addresses });
    },
    clearA: (host) => post('/clear-a', { host }),
    async setAAAA(host, addresses) {
      await post('/clear-aaaa', { host });
      await post('/add-aaaa', { host, addresses });
    },
    clearAAAA: (host) => post('/clear-aaaa', { host }),
    setCname: (host, target) => post('/set-cname', { host, target }),
    clearCname: (host) => post('/clear-cname', { host }),
    setServfail: (host) => post('/set-servfail', { host }),
    clearServfail: (host) => post('/clear-servfail', { host }),
    // TXT and CAA are kept under the fully qualified name (trailing dot), as queries ask.
    async setTxt(host, value) {
      await post('/clear-txt', { host: fqdn(host) });
      await post('/set-txt', { host: fqdn(host), value });
    },
    clearTxt: (host) => post('/clear-txt', { host: fqdn(host) }),
    addCaa: (host, policies) => post('/add-caa', { host: fqdn(host), policies }),
    clearCaa: (host) => post('/clear-caa', { host: fqdn(host) }),
  };
}
