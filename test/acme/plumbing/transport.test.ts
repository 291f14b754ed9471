// The transport: Retry-After parsing, and the badNonce retry against a Pebble that rejects 30 %
// of good nonces.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import { obtainCertificate } from '../../../src/acme/obtain.ts';
import { AcmeAccount } from '../../../src/acme/plumbing/account.ts';
import { AcmeTransport, parseRetryAfter } from '../../../src/acme/plumbing/transport.ts';
import { createSelfSignedCertificate, generateAccountKey } from '../../../src/acme/x509.ts';
import { captureLogger, newCertRequest, respondersWithStops, verifyChain } from '../../support/acme-responders.ts';

describe('Retry-After', () => {
  test('Retry-After: seconds and HTTP date', () => {
    assert.equal(parseRetryAfter('3'), 3000);
    assert.equal(parseRetryAfter(undefined), undefined);
    assert.equal(parseRetryAfter('soon'), undefined);
    const now = Date.parse('2030-01-01T00:00:00Z');
    assert.equal(parseRetryAfter('Tue, 01 Jan 2030 00:00:07 GMT', now), 7000);
    assert.equal(parseRetryAfter('Mon, 31 Dec 2029 23:59:00 GMT', now), 0);
  });
});

describe('TLS to the CA', () => {
  test('every connection to the CA shares one TLS context: the roots are not parsed again per connection', async () => {
    const pair = await createSelfSignedCertificate('127.0.0.1');
    // Connection: close, so every request is a new TLS connection.
    const server = createServer({ cert: pair.certPem, key: pair.keyPem }, (_req, res) => res.writeHead(200, { connection: 'close' }).end('{}'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/directory`;
    const transport = new AcmeTransport({ directoryUrl: url, trustedRoots: [pair.certPem] });
    // node:tls builds a context for a connection given `ca` (and no secureContext) through this export.
    const tls = createRequire(import.meta.url)('node:tls') as typeof import('node:tls');
    const real = tls.createSecureContext;
    let built = 0;
    tls.createSecureContext = (...args) => {
      built++;
      return real(...args);
    };
    let connections = 0;
    server.on('secureConnection', () => connections++);
    try {
      for (let i = 0; i < 4; i++) assert.equal((await transport.request('GET', url, { step: 'directory' })).status, 200, 'the trusted root verifies the server');
    } finally {
      tls.createSecureContext = real;
      await transport.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    assert.equal(connections, 4);
    assert.ok(built <= 1, `${built} TLS contexts built for 4 connections`);
  });

  test('HTTP/1.1 to a CA that offers HTTP/2: each request costs less CPU, and a few requests per order gain nothing from streams', async () => {
    const pair = await createSelfSignedCertificate('127.0.0.1');
    // Offers h2 first, as Go's servers (Pebble, Boulder) and Let's Encrypt's front end do; a
    // node:https server answers HTTP/1.1 only, so a client that took h2 fails the request.
    const server = createServer({ cert: pair.certPem, key: pair.keyPem, ALPNProtocols: ['h2', 'http/1.1'] }, (_req, res) => res.writeHead(200).end('{}'));
    const negotiated: Array<string | false | null> = [];
    server.prependListener('secureConnection', (socket) => negotiated.push(socket.alpnProtocol));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/directory`;
    const transport = new AcmeTransport({ directoryUrl: url, trustedRoots: [pair.certPem] });
    try {
      assert.equal((await transport.request('GET', url, { step: 'directory' })).status, 200);
    } finally {
      await transport.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    assert.deepEqual(negotiated, ['http/1.1']);
  });
});

describe('badNonce', () => {
  const variant = respondersWithStops();
  const { responders, stops } = variant;

  test('badNonce: issuance succeeds with PEBBLE_WFE_NONCEREJECT=30', async () => {
    const pebble = await variant.startPebble({ env: { PEBBLE_WFE_NONCEREJECT: '30' } });
    const { logger, lines } = captureLogger();
    // Six rejections in a row (0.3^6 ≈ 0.07 % per request) would exhaust the default 5 retries;
    // allow more so the test is not flaky. The retry path is the same.
    const account = AcmeAccount.connect({
      directoryUrl: pebble.directoryUrl,
      accountKey: generateAccountKey(),
      trustedRoots: [pebble.listenerCaPem],
      logger,
      badNonceRetries: 12,
    });
    stops.push(() => account.transport.close());
    const retries = (): number => lines().filter((l) => l.msg === 'acme badNonce, retrying').length;
    // Repeat until Pebble rejected at least one nonce (0.7^~40 chance of never seeing one).
    for (let i = 0; i < 4 && (i === 0 || retries() === 0); i++) {
      const domain = `nonce${i}.certgate.test`;
      const result = await obtainCertificate(account, {
        domains: [domain],
        csrDer: await newCertRequest([domain]),
        solvers: [responders.http01()],
      });
      verifyChain(result.certificatePem, await pebble.rootPem());
    }
    assert.ok(retries() > 0, 'Pebble rejected no nonce at all');
    assert.match(pebble.output(), /reject 30% of good nonces/);
  });
});
