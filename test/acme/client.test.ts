// The ACME client against a real Pebble (Debian's 2.4) with real http-01 and tls-alpn-01
// validation against small servers this test runs on Pebble's httpPort / tlsPort.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey, verify, X509Certificate } from 'node:crypto';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createSecureContext, createServer as createTlsServer, type SecureContext, type Server as TlsServer } from 'node:tls';
import { pino, type Logger } from 'pino';
import { AcmeClient, obtainCertificate, parseRetryAfter, type ChallengeSolver } from '../../src/acme/client.ts';
import { createCsr, createTlsAlpnCertificate, generateAccountKey, generateKeyPair, parseCertificate, splitPemChain } from '../../src/acme/certs.ts';
import { AcmeError, isAcmeError } from '../../src/acme/errors.ts';
import { base64url, dns01TxtValue, jwkThumbprint, signJws } from '../../src/acme/jws.ts';
import { startPebble, type PebbleHandle } from '../support/pebble.ts';
import { freePort } from '../support/ports.ts';

const HTTP01_PREFIX = '/.well-known/acme-challenge/';

/** The stand-in for the gateway: http-01 and tls-alpn-01 responders on Pebble's validation ports. */
class Responders {
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
function captureLogger(): { logger: Logger; lines: () => Record<string, unknown>[] } {
  const raw: string[] = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => void raw.push(s) });
  return { logger, lines: () => raw.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

async function eventually(check: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Checks leaf → intermediate → root signatures and issuer links; returns the parsed chain. */
function verifyChain(chainPem: string, rootPem: string): X509Certificate[] {
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

async function newCertRequest(domains: string[]): Promise<Uint8Array> {
  const { keyPair } = await generateKeyPair('ecdsa-p256');
  return createCsr(domains, keyPair, 'ecdsa-p256');
}

describe('JWS helpers', () => {
  test('RFC 7638 §3.1 thumbprint example', () => {
    const n =
      '0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw';
    const key = createPublicKey({ key: { kty: 'RSA', n, e: 'AQAB' }, format: 'jwk' });
    assert.equal(jwkThumbprint(key), 'NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs');
  });

  test('ES256 JWS verifies and carries jwk or kid', async () => {
    const key = generateAccountKey();
    const jws = signJws({ key, url: 'https://ca.test/new-acct', nonce: 'n1', payload: { a: 1 } });
    const header = JSON.parse(Buffer.from(jws.protected, 'base64url').toString()) as Record<string, unknown>;
    assert.equal(header.alg, 'ES256');
    assert.equal(header.nonce, 'n1');
    assert.equal(header.url, 'https://ca.test/new-acct');
    assert.ok(header.jwk && !('kid' in header));
    const sig = Buffer.from(jws.signature, 'base64url');
    assert.equal(sig.length, 64);
    assert.ok(
      verify('sha256', Buffer.from(`${jws.protected}.${jws.payload}`), { key: createPublicKey(key), dsaEncoding: 'ieee-p1363' }, sig),
    );
    const get = signJws({ key, url: 'https://ca.test/order/1', nonce: 'n2', kid: 'https://ca.test/acct/1' });
    assert.equal(get.payload, '', 'POST-as-GET has an empty payload');
    const h2 = JSON.parse(Buffer.from(get.protected, 'base64url').toString()) as Record<string, unknown>;
    assert.equal(h2.kid, 'https://ca.test/acct/1');
    assert.ok(!('jwk' in h2));
    assert.equal(base64url('hi?'), 'aGk_');
    assert.match(dns01TxtValue('token.thumb'), /^[A-Za-z0-9_-]{43}$/);
  });

  test('Retry-After: seconds and HTTP date', () => {
    assert.equal(parseRetryAfter('3'), 3000);
    assert.equal(parseRetryAfter(undefined), undefined);
    assert.equal(parseRetryAfter('soon'), undefined);
    const now = Date.parse('2030-01-01T00:00:00Z');
    assert.equal(parseRetryAfter('Tue, 01 Jan 2030 00:00:07 GMT', now), 7000);
    assert.equal(parseRetryAfter('Mon, 31 Dec 2029 23:59:00 GMT', now), 0);
  });
});

describe('AcmeClient against Pebble', () => {
  const responders = new Responders();
  let pebble: PebbleHandle;
  const clients: AcmeClient[] = [];
  const newClient = (opts: Partial<ConstructorParameters<typeof AcmeClient>[0]> = {}): AcmeClient => {
    const client = new AcmeClient({
      directoryUrl: pebble.directoryUrl,
      accountKey: opts.accountKey ?? generateAccountKey(),
      trustedRoots: [pebble.listenerCaPem],
      ...opts,
    });
    clients.push(client);
    return client;
  };

  before(async () => {
    await responders.start();
    pebble = await startPebble({ httpPort: responders.httpPort, tlsPort: responders.tlsPort });
  });

  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await pebble?.stop();
    await responders.stop();
  });

  test('obtains a certificate with http-01 and the chain verifies against Pebble’s root', async () => {
    const client = newClient({ email: 'ops@certgate.test' });
    const { logger, lines } = captureLogger();
    const ordersBefore = pebble.ordersPlaced();
    const issuedBefore = pebble.certificatesIssued();
    const domains = ['a.certgate.test', 'www.a.certgate.test'];
    const calls: string[] = [];
    const result = await obtainCertificate(client, {
      domains,
      csrDer: await newCertRequest(domains),
      solvers: [responders.http01(calls)],
      logger,
    });
    const chain = verifyChain(result.certificatePem, await pebble.rootPem());
    const leaf = parseCertificate(result.certificatePem);
    assert.deepEqual([...leaf.names].sort(), [...domains].sort());
    assert.equal(leaf.serialNumber, chain[0]!.serialNumber.toLowerCase());
    assert.ok(leaf.notAfter.getTime() > Date.now());
    assert.deepEqual(result.challengeTypes, ['http-01', 'http-01']);
    assert.match(result.orderUrl, /^https:\/\/127\.0\.0\.1:\d+\//);
    // every presented challenge was cleaned up
    assert.deepEqual(calls.filter((c) => c.startsWith('present')).sort(), domains.map((d) => `present ${d}`).sort());
    assert.deepEqual(calls.filter((c) => c.startsWith('cleanup')).sort(), domains.map((d) => `cleanup ${d}`).sort());
    assert.equal(responders.tokens.size, 0);
    assert.ok(responders.userAgents.some((ua) => ua.includes('Pebble')), 'Pebble validated over http');
    // one JSON line per step with domain, step, ca and elapsed ms
    const steps = lines().filter((l) => l.level === 30 && typeof l.step === 'string');
    for (const name of ['new-order', 'authorization', 'challenge', 'finalize', 'download']) {
      const line = steps.find((l) => l.step === name);
      assert.ok(line, `no log line for step ${name}`);
      assert.equal(typeof line.domain, 'string');
      assert.equal(line.ca, pebble.directoryUrl);
      assert.equal(typeof line.ms, 'number');
    }
    await eventually(() => pebble.certificatesIssued() === issuedBefore + 1, 'certificate count');
    assert.equal(pebble.ordersPlaced(), ordersBefore + 1);
  });

  test('obtains a certificate with tls-alpn-01', async () => {
    const client = newClient();
    const calls: string[] = [];
    const result = await obtainCertificate(client, {
      domains: ['alpn.certgate.test'],
      csrDer: await newCertRequest(['alpn.certgate.test']),
      // tls-alpn-01 preferred; http-01 must not be used
      solvers: [responders.tlsAlpn01(calls), responders.http01(calls)],
    });
    verifyChain(result.certificatePem, await pebble.rootPem());
    assert.deepEqual(parseCertificate(result.certificatePem).names, ['alpn.certgate.test']);
    assert.deepEqual(result.challengeTypes, ['tls-alpn-01']);
    assert.deepEqual(calls, ['present alpn.certgate.test', 'cleanup alpn.certgate.test']);
    assert.ok(responders.alpnHandshakes.includes('alpn.certgate.test'), 'Pebble validated over TLS-ALPN');
    assert.equal(responders.alpn.size, 0);
  });

  test('a second client with the same account key finds the same account', async () => {
    const accountKey = generateAccountKey();
    const accountsBefore = pebble.accountsCreated();
    const first = newClient({ accountKey });
    const url = await first.ensureAccount();
    assert.match(url, /^https:\/\/127\.0\.0\.1:\d+\/my-account\//);
    assert.equal(await first.ensureAccount(), url, 'cached');
    const second = newClient({ accountKey });
    assert.equal(await second.ensureAccount(), url);
    // a client given the account URL orders without registering
    const third = newClient({ accountKey, accountUrl: url });
    const order = await third.newOrder(['reuse.certgate.test']);
    assert.equal(order.status, 'pending');
    assert.equal(order.authorizations.length, 1);
    assert.deepEqual(order.identifiers, [{ type: 'dns', value: 'reuse.certgate.test' }]);
    await eventually(() => pebble.accountsCreated() === accountsBefore + 1, 'account count');
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(pebble.accountsCreated(), accountsBefore + 1, 'only one account was created');
  });

  test('a wrong key authorization fails with an AcmeError naming domain and step', async () => {
    const client = newClient();
    const calls: string[] = [];
    const issuedBefore = pebble.certificatesIssued();
    const err = await obtainCertificate(client, {
      domains: ['bad.certgate.test'],
      csrDer: await newCertRequest(['bad.certgate.test']),
      solvers: [responders.http01(calls, { corrupt: true })],
    }).then(
      () => assert.fail('expected the order to fail'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof AcmeError, String(err));
    assert.equal(err.step, 'authorization');
    assert.equal(err.domain, 'bad.certgate.test');
    assert.equal(err.type, 'urn:ietf:params:acme:error:unauthorized');
    assert.ok(isAcmeError(err, 'unauthorized'));
    assert.match(err.message, /authorization/);
    assert.match(err.message, /bad\.certgate\.test/);
    assert.match(err.detail, /http-01/);
    assert.deepEqual(calls, ['present bad.certgate.test', 'cleanup bad.certgate.test']);
    assert.equal(pebble.certificatesIssued(), issuedBefore);
  });

  test('low-level steps: order, authorization, challenge, finalize, download', async () => {
    const accountKey = generateAccountKey();
    const client = newClient({ accountKey });
    const ordersBefore = pebble.ordersPlaced();
    const issuedBefore = pebble.certificatesIssued();
    const order = await client.newOrder(['steps.certgate.test']);
    const authzUrl = order.authorizations[0]!;
    const authz = await client.getAuthorization(authzUrl);
    assert.equal(authz.status, 'pending');
    assert.equal(authz.identifier.value, 'steps.certgate.test');
    const challenge = authz.challenges.find((c) => c.type === 'http-01')!;
    assert.ok(challenge, 'http-01 offered');
    assert.deepEqual(authz.challenges.map((c) => c.type).sort(), ['dns-01', 'http-01', 'tls-alpn-01']);
    const keyAuth = client.keyAuthorization(challenge.token);
    assert.equal(keyAuth, `${challenge.token}.${jwkThumbprint(accountKey)}`);
    responders.tokens.set(challenge.token, keyAuth);
    try {
      await client.respondToChallenge(challenge.url);
      const valid = await client.waitForAuthorization(authzUrl, { timeoutMs: 10_000 });
      assert.equal(valid.status, 'valid');
    } finally {
      responders.tokens.delete(challenge.token);
    }
    const finalized = await client.finalizeOrder(order, await newCertRequest(['steps.certgate.test']), { timeoutMs: 10_000 });
    assert.equal(finalized.status, 'valid');
    assert.equal(finalized.url, order.url);
    const pem = await client.downloadCertificate(finalized);
    verifyChain(pem, await pebble.rootPem());
    assert.equal((await client.getOrder(order.url)).status, 'valid');

    // an order that is only placed counts as an order, not as a certificate
    const pendingOrder = await client.newOrder(['never.certgate.test']);
    const deactivated = await client.deactivateAuthorization(pendingOrder.authorizations[0]!);
    assert.equal(deactivated.status, 'deactivated');
    await eventually(() => pebble.ordersPlaced() === ordersBefore + 2, 'order count');
    await eventually(() => pebble.certificatesIssued() === issuedBefore + 1, 'certificate count');
    assert.match(pebble.output(), /Added order/);
  });

  test('a missing solver type fails with a clear error and presents nothing', async () => {
    const client = newClient();
    const calls: string[] = [];
    // a challenge type Pebble does not offer
    const fake = { ...responders.http01(calls), type: 'http-02' } as unknown as ChallengeSolver;
    await assert.rejects(
      obtainCertificate(client, { domains: ['nosolver.certgate.test'], csrDer: await newCertRequest(['nosolver.certgate.test']), solvers: [fake] }),
      (e: unknown) => e instanceof AcmeError && e.step === 'challenge' && e.domain === 'nosolver.certgate.test' && /no solver/.test(e.message),
    );
    assert.deepEqual(calls, []);
  });

  test('the overall timeout aborts and still cleans up', async () => {
    const client = newClient();
    const calls: string[] = [];
    // present() outlasts the 400 ms overall limit 75 times over: only the limit can end the attempt
    // in time, and if it did not, the order would go on to fail validation instead.
    let presented = false;
    const slow: ChallengeSolver = {
      type: 'http-01',
      present: async (domain) => {
        calls.push(`present ${domain}`);
        await new Promise((r) => setTimeout(r, 30_000).unref());
        presented = true;
      },
      cleanup: async (domain) => void calls.push(`cleanup ${domain}`),
    };
    const csrDer = await newCertRequest(['slow.certgate.test']);
    await assert.rejects(
      obtainCertificate(client, { domains: ['slow.certgate.test'], csrDer, solvers: [slow], timeoutMs: 400 }),
      (e: unknown) => isAcmeError(e, 'urn:certgate:error:timeout') && e.domain === 'slow.certgate.test' && e.step === 'challenge',
    );
    assert.equal(presented, false, 'waited for the slow solver');
    assert.deepEqual(calls, ['present slow.certgate.test', 'cleanup slow.certgate.test']);
  });
});

describe('Pebble variants', () => {
  const responders = new Responders();
  const stops: (() => Promise<void>)[] = [];

  before(async () => {
    await responders.start();
  });

  after(async () => {
    for (const stop of stops.reverse()) await stop();
    await responders.stop();
  });

  test('badNonce: issuance succeeds with PEBBLE_WFE_NONCEREJECT=30', async () => {
    const pebble = await startPebble({
      httpPort: responders.httpPort,
      tlsPort: responders.tlsPort,
      env: { PEBBLE_WFE_NONCEREJECT: '30' },
    });
    stops.push(() => pebble.stop());
    const { logger, lines } = captureLogger();
    // Six rejections in a row (0.3^6 ≈ 0.07 % per request) would exhaust the default 5 retries;
    // allow more so the test is not flaky. The retry path is the same.
    const client = new AcmeClient({
      directoryUrl: pebble.directoryUrl,
      accountKey: generateAccountKey(),
      trustedRoots: [pebble.listenerCaPem],
      logger,
      badNonceRetries: 12,
    });
    stops.push(() => client.close());
    const retries = (): number => lines().filter((l) => l.msg === 'acme badNonce, retrying').length;
    // Repeat until Pebble rejected at least one nonce (0.7^~40 chance of never seeing one).
    for (let i = 0; i < 4 && (i === 0 || retries() === 0); i++) {
      const domain = `nonce${i}.certgate.test`;
      const result = await obtainCertificate(client, {
        domains: [domain],
        csrDer: await newCertRequest([domain]),
        solvers: [responders.http01()],
      });
      verifyChain(result.certificatePem, await pebble.rootPem());
    }
    assert.ok(retries() > 0, 'Pebble rejected no nonce at all');
    assert.match(pebble.output(), /reject 30% of good nonces/);
  });

  test('valid authorizations are skipped (PEBBLE_AUTHZREUSE=100)', async () => {
    const pebble = await startPebble({
      httpPort: responders.httpPort,
      tlsPort: responders.tlsPort,
      env: { PEBBLE_AUTHZREUSE: '100' },
      certificateValidityPeriod: 3600,
    });
    stops.push(() => pebble.stop());
    const client = new AcmeClient({ directoryUrl: pebble.directoryUrl, accountKey: generateAccountKey(), trustedRoots: [pebble.listenerCaPem] });
    stops.push(() => client.close());
    const domains = ['reuse.certgate.test'];
    const calls: string[] = [];
    const first = await obtainCertificate(client, { domains, csrDer: await newCertRequest(domains), solvers: [responders.http01(calls)] });
    assert.deepEqual(first.challengeTypes, ['http-01']);
    const second = await obtainCertificate(client, { domains, csrDer: await newCertRequest(domains), solvers: [responders.http01(calls)] });
    assert.deepEqual(second.challengeTypes, [], 'no challenge needed for a reused valid authorization');
    assert.deepEqual(calls, ['present reuse.certgate.test', 'cleanup reuse.certgate.test']);
    const leaf = parseCertificate(second.certificatePem);
    const lifetime = (leaf.notAfter.getTime() - leaf.notBefore.getTime()) / 1000;
    assert.ok(lifetime > 3500 && lifetime <= 3600, `certificateValidityPeriod honoured (${lifetime} s)`);
    await eventually(() => pebble.ordersPlaced() === 2 && pebble.certificatesIssued() === 2, 'counts');
  });

  test('External Account Binding', async () => {
    const hmacKey = 'zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W';
    const pebble = await startPebble({
      httpPort: responders.httpPort,
      tlsPort: responders.tlsPort,
      externalAccountBindingRequired: true,
      externalAccountMACKeys: { 'kid-1': hmacKey },
    });
    stops.push(() => pebble.stop());
    const base = { directoryUrl: pebble.directoryUrl, trustedRoots: [pebble.listenerCaPem] };
    const without = new AcmeClient({ ...base, accountKey: generateAccountKey() });
    stops.push(() => without.close());
    await assert.rejects(without.ensureAccount(), (e: unknown) => isAcmeError(e, 'externalAccountRequired') && e.step === 'new-account');
    const wrong = new AcmeClient({ ...base, accountKey: generateAccountKey(), eab: { kid: 'kid-1', hmacKey: base64url(Buffer.from('not the key')) } });
    stops.push(() => wrong.close());
    await assert.rejects(wrong.ensureAccount(), (e: unknown) => e instanceof AcmeError && e.step === 'new-account');
    const withEab = new AcmeClient({ ...base, accountKey: generateAccountKey(), eab: { kid: 'kid-1', hmacKey } });
    stops.push(() => withEab.close());
    assert.match(await withEab.ensureAccount(), /\/my-account\//);
    const result = await obtainCertificate(withEab, {
      domains: ['eab.certgate.test'],
      csrDer: await newCertRequest(['eab.certgate.test']),
      solvers: [responders.http01()],
    });
    verifyChain(result.certificatePem, await pebble.rootPem());
  });

  test('startPebble exposes challtestsrv and stops cleanly', async () => {
    const pebble = await startPebble({ httpPort: responders.httpPort, tlsPort: responders.tlsPort });
    stops.push(() => pebble.stop());
    assert.match(pebble.dnsAddress, /^127\.0\.0\.1:\d+$/);
    const res = await fetch(`${pebble.challtestsrvUrl}/set-txt`, {
      method: 'POST',
      body: JSON.stringify({ host: '_acme-challenge.x.certgate.test.', value: 'abc' }),
    });
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    const { readFile } = await import('node:fs/promises');
    assert.equal(await readFile(pebble.listenerCaPath, 'utf8'), pebble.listenerCaPem);
    await pebble.stop();
    await pebble.stop(); // idempotent
    await assert.rejects(readFile(pebble.listenerCaPath, 'utf8'));
    await assert.rejects(fetch(pebble.directoryUrl.replace('https', 'http')));
  });
});
