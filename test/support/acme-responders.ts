// Test stand-ins for ACME tests against a real Pebble: http-01 and tls-alpn-01 responders on
// Pebble's validation ports, suite set-ups, a log capture, chain verification, and a CSR helper.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createSecureContext, createServer as createTlsServer, type SecureContext, type Server as TlsServer } from 'node:tls';
import { after, before } from 'node:test';
import { pino, type Logger } from 'pino';
import type { ChallengeSolver } from '../../src/acme/authorize.ts';
import { AcmeAccount, type ConnectOptions } from '../../src/acme/plumbing/account.ts';
import { createCsr, createTlsAlpnCertificate, generateAccountKey, generateKeyPair, splitPemChain } from '../../src/acme/x509.ts';
import { startPebble, type PebbleHandle, type PebbleOptions } from './pebble.ts';
import { freePort } from './ports.ts';

const HTTP01_PREFIX = '/.well-known/acme-challenge/';

/** The stand-in for the gateway: http-01 and tls-alpn-01 responders on Pebble's validation ports. */
export class Responders {
  readonly tokens = new Map<string, string>();
  readonly alpn = new Map<string, SecureContext>();
  readonly userAgents: string[] = [];
  readonly alpnHandshakes: string[] = [];
  httpPort = 0;
  tlsPort = 0;
  private http: HttpServer | undefined;
  private tls: TlsServer | undefined;

  async start(): Promise<void> {
    this.httpPort = await freePort();
    this.tlsPort = await freePort();
    this.http = createHttpServer((req, res) => {
      this.userAgents.push(String(req.headers['user-agent']));
      const url = req.url ?? '';
      const keyAuth = url.startsWith(HTTP01_PREFIX) ? this.tokens.get(url.slice(HTTP01_PREFIX.length)) : undefined;
      if (keyAuth === undefined) res.writeHead(404).end('not found\n');
      else res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(keyAuth);
    });
    this.tls = createTlsServer({
      ALPNProtocols: ['acme-tls/1'],
      SNICallback: (servername, cb) => {
        this.alpnHandshakes.push(servername);
        const ctx = this.alpn.get(servername.toLowerCase());
        if (ctx) cb(null, ctx);
        else cb(new Error(`no tls-alpn-01 certificate for ${servername}`));
      },
    });
    this.tls.on('secureConnection', (socket) => socket.end());
    this.tls.on('tlsClientError', () => undefined);
    await new Promise<void>((resolve) => this.http!.listen(this.httpPort, '127.0.0.1', resolve));
    await new Promise<void>((resolve) => this.tls!.listen(this.tlsPort, '127.0.0.1', resolve));
  }

  async stop(): Promise<void> {
    this.http?.closeAllConnections();
    await Promise.all([
      new Promise<void>((resolve) => (this.http ? this.http.close(() => resolve()) : resolve())),
      new Promise<void>((resolve) => (this.tls ? this.tls.close(() => resolve()) : resolve())),
    ]);
  }

  http01(log: string[] = [], opts: { corrupt?: boolean } = {}): ChallengeSolver {
    return {
      type: 'http-01',
      present: async (domain, token, keyAuth) => {
        log.push(`present ${domain}`);
        this.tokens.set(token, opts.corrupt ? `${keyAuth}-wrong` : keyAuth);
      },
      cleanup: async (domain, token) => {
        log.push(`cleanup ${domain}`);
        this.tokens.delete(token);
      },
    };
  }

  tlsAlpn01(log: string[] = []): ChallengeSolver {
    return {
      type: 'tls-alpn-01',
      present: async (domain, _token, keyAuth) => {
        log.push(`present ${domain}`);
        const { certPem, keyPem } = await createTlsAlpnCertificate(domain, keyAuth);
        this.alpn.set(domain, createSecureContext({ cert: certPem, key: keyPem }));
      },
      cleanup: async (domain) => {
        log.push(`cleanup ${domain}`);
        this.alpn.delete(domain);
      },
    };
  }
}

/** A debug-level pino logger whose JSON lines land in `lines`. */
export function captureLogger(): { logger: Logger; lines: () => Record<string, unknown>[] } {
  const raw: string[] = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => void raw.push(s) });
  return { logger, lines: () => raw.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

export async function eventually(check: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Checks leaf → intermediate → root signatures and issuer links; returns the parsed chain. */
export function verifyChain(chainPem: string, rootPem: string): X509Certificate[] {
  const chain = splitPemChain(chainPem).map((pem) => new X509Certificate(pem));
  assert.ok(chain.length >= 2, `expected leaf + intermediate, got ${chain.length} certificates`);
  const root = new X509Certificate(rootPem);
  const all = [...chain, root];
  for (let i = 0; i + 1 < all.length; i++) {
    const cert = all[i]!;
    const issuer = all[i + 1]!;
    assert.ok(cert.checkIssued(issuer), `certificate ${i} not issued by the next one`);
    assert.ok(cert.verify(issuer.publicKey), `signature of certificate ${i} does not verify`);
  }
  assert.ok(root.verify(root.publicKey), 'root is not self-signed');
  return chain;
}

export async function newCertRequest(domains: string[]): Promise<Uint8Array> {
  const { keyPair } = await generateKeyPair('ecdsa-p256');
  return createCsr(domains, keyPair, 'ecdsa-p256');
}

/** The state pebbleSuite() sets up; `pebble` is there once the before() hook ran. */
export interface PebbleSuite {
  responders: Responders;
  pebble: PebbleHandle;
  /** An account on a new transport to the suite's Pebble (fresh key unless given); closed after the suite. */
  newAccount(opts?: Partial<ConnectOptions>): AcmeAccount;
}

/** Registers before/after hooks in the calling describe(): responders, one Pebble, accounts closed at the end. */
export function pebbleSuite(): PebbleSuite {
  const accounts: AcmeAccount[] = [];
  const suite: PebbleSuite = {
    responders: new Responders(),
    pebble: undefined as unknown as PebbleHandle,
    newAccount: (opts = {}) => {
      const account = AcmeAccount.connect({ directoryUrl: suite.pebble.directoryUrl, accountKey: opts.accountKey ?? generateAccountKey(), trustedRoots: [suite.pebble.listenerCaPem], ...opts });
      accounts.push(account);
      return account;
    },
  };
  before(async () => {
    await suite.responders.start();
    suite.pebble = await startPebble({ httpPort: suite.responders.httpPort, tlsPort: suite.responders.tlsPort });
  });
  after(async () => {
    await Promise.all(accounts.map((a) => a.transport.close()));
    await suite.pebble?.stop();
    await suite.responders.stop();
  });
  return suite;
}

/**
 * Registers hooks for tests that start their own Pebbles: responders, `startPebble` (on the
 * responders' ports, stopped after the suite) and `stops`, run in reverse at the end.
 */
export function respondersWithStops(): { responders: Responders; stops: (() => Promise<void>)[]; startPebble: (opts?: Omit<PebbleOptions, 'httpPort' | 'tlsPort'>) => Promise<PebbleHandle> } {
  const responders = new Responders();
  const stops: (() => Promise<void>)[] = [];
  before(() => responders.start());
  after(async () => {
    for (const stop of stops.reverse()) await stop();
    await responders.stop();
  });
  const start = async (opts: Omit<PebbleOptions, 'httpPort' | 'tlsPort'> = {}): Promise<PebbleHandle> => {
    const pebble = await startPebble({ httpPort: responders.httpPort, tlsPort: responders.tlsPort, ...opts });
    stops.push(() => pebble.stop());
    return pebble;
  };
  return { responders, stops, startPebble: start };
}
