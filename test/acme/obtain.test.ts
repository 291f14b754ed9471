// obtainCertificate against a real Pebble (Debian's 2.4) with real http-01 and tls-alpn-01
// validation against small servers this test runs on Pebble's httpPort / tlsPort.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChallengeSolver } from '../../src/acme/authorize.ts';
import { obtainCertificate } from '../../src/acme/obtain.ts';
import { startAcmeProxy } from '../support/acme-proxy.ts';
import { AcmeAccount } from '../../src/acme/plumbing/account.ts';
import { AcmeError, isAcmeError } from '../../src/acme/plumbing/errors.ts';
import { generateAccountKey, parseCertificate } from '../../src/acme/x509.ts';
import { captureLogger, eventually, newCertRequest, pebbleSuite, respondersWithStops, verifyChain } from '../support/acme-responders.ts';

describe('obtainCertificate against Pebble', () => {
  const suite = pebbleSuite();

  test('obtains a certificate with http-01 and the chain verifies against Pebble’s root', async () => {
    const client = suite.newAccount({ email: 'ops@certgate.test' });
    const { logger, lines } = captureLogger();
    const ordersBefore = suite.pebble.ordersPlaced();
    const issuedBefore = suite.pebble.certificatesIssued();
    const domains = ['a.certgate.test', 'www.a.certgate.test'];
    const calls: string[] = [];
    const result = await obtainCertificate(client, {
      domains,
      csrDer: await newCertRequest(domains),
      solvers: [suite.responders.http01(calls)],
      logger,
    });
    const chain = verifyChain(result.certificatePem, await suite.pebble.rootPem());
    const leaf = parseCertificate(result.certificatePem);
    assert.deepEqual([...leaf.names].sort(), [...domains].sort());
    assert.equal(leaf.serialNumber, chain[0]!.serialNumber.toLowerCase());
    assert.ok(leaf.notAfter.getTime() > Date.now());
    assert.deepEqual(result.challengeTypes, ['http-01', 'http-01']);
    assert.match(result.orderUrl, /^https:\/\/127\.0\.0\.1:\d+\//);
    // every presented challenge was cleaned up
    assert.deepEqual(calls.filter((c) => c.startsWith('present')).sort(), domains.map((d) => `present ${d}`).sort());
    assert.deepEqual(calls.filter((c) => c.startsWith('cleanup')).sort(), domains.map((d) => `cleanup ${d}`).sort());
    assert.equal(suite.responders.tokens.size, 0);
    assert.ok(suite.responders.userAgents.some((ua) => ua.includes('Pebble')), 'Pebble validated over http');
    // one JSON line per step with domain, step, ca and elapsed ms
    const steps = lines().filter((l) => l.level === 30 && typeof l.step === 'string');
    for (const name of ['new-order', 'authorization', 'challenge', 'finalize', 'download']) {
      const line = steps.find((l) => l.step === name);
      assert.ok(line, `no log line for step ${name}`);
      assert.equal(typeof line.domain, 'string');
      assert.equal(line.ca, suite.pebble.directoryUrl);
      assert.equal(typeof line.ms, 'number');
    }
    await eventually(() => suite.pebble.certificatesIssued() === issuedBefore + 1, 'certificate count');
    assert.equal(suite.pebble.ordersPlaced(), ordersBefore + 1);
  });

  test('no request the CA could only answer "not yet": the first authorization poll waits a poll interval, finalize comes without an order poll', async () => {
    const client = suite.newAccount();
    const transport = client.transport;
    const seen: { method: string; url: string; step: string; at: number }[] = [];
    const request = transport.request.bind(transport);
    transport.request = (method, url, ctx, opts) => {
      seen.push({ method, url, step: ctx.step, at: performance.now() });
      return request(method, url, ctx, opts);
    };
    const domains = ['fewer.certgate.test'];
    const result = await obtainCertificate(client, { domains, csrDer: await newCertRequest(domains), solvers: [suite.responders.http01([])] });
    verifyChain(result.certificatePem, await suite.pebble.rootPem());
    const challenge = seen.findIndex((r) => r.step === 'challenge');
    const polls = seen.filter((r, i) => i > challenge && r.step === 'authorization');
    assert.ok(polls.length >= 1, 'the authorization was polled');
    assert.ok(polls[0]!.at - seen[challenge]!.at >= 250, `first poll ${(polls[0]!.at - seen[challenge]!.at).toFixed(0)} ms after the challenge: sooner, it would find it pending`);
    const afterAuthorizations = seen[seen.findLastIndex((r) => r.step === 'authorization') + 1]!;
    assert.equal(afterAuthorizations.step, 'finalize');
    assert.doesNotMatch(afterAuthorizations.url, /\/my-order\//, 'finalize at once, no order poll first');
    assert.match(afterAuthorizations.url, /finalize/);
  });

  test('a CA that answers the early finalize with orderNotReady is waited for, then finalized: the certificate is obtained', async (t) => {
    const proxy = await startAcmeProxy(suite.pebble);
    t.after(() => proxy.close());
    const client = suite.newAccount({ directoryUrl: proxy.directoryUrl });
    proxy.failNext('finalize', 1, { status: 403, type: 'urn:ietf:params:acme:error:orderNotReady' });
    const domains = ['notready.certgate.test'];
    const result = await obtainCertificate(client, { domains, csrDer: await newCertRequest(domains), solvers: [suite.responders.http01([])] });
    verifyChain(result.certificatePem, await suite.pebble.rootPem());
    const kinds = proxy.exchanges().map((x) => `${x.kind}${x.injected ? ' (refused)' : ''}`);
    const refused = kinds.indexOf('finalize (refused)');
    assert.ok(refused >= 0, kinds.join(', '));
    assert.deepEqual(kinds.slice(refused, refused + 3), ['finalize (refused)', 'order', 'finalize'], 'then the order is polled until ready and finalized');
  });

  test('obtains a certificate with tls-alpn-01', async () => {
    const client = suite.newAccount();
    const calls: string[] = [];
    const result = await obtainCertificate(client, {
      domains: ['alpn.certgate.test'],
      csrDer: await newCertRequest(['alpn.certgate.test']),
      // tls-alpn-01 preferred; http-01 must not be used
      solvers: [suite.responders.tlsAlpn01(calls), suite.responders.http01(calls)],
    });
    verifyChain(result.certificatePem, await suite.pebble.rootPem());
    assert.deepEqual(parseCertificate(result.certificatePem).names, ['alpn.certgate.test']);
    assert.deepEqual(result.challengeTypes, ['tls-alpn-01']);
    assert.deepEqual(calls, ['present alpn.certgate.test', 'cleanup alpn.certgate.test']);
    assert.ok(suite.responders.alpnHandshakes.includes('alpn.certgate.test'), 'Pebble validated over TLS-ALPN');
    assert.equal(suite.responders.alpn.size, 0);
  });

  test('a wrong key authorization fails with an AcmeError naming domain and step', async () => {
    const client = suite.newAccount();
    const calls: string[] = [];
    const issuedBefore = suite.pebble.certificatesIssued();
    const err = await obtainCertificate(client, {
      domains: ['bad.certgate.test'],
      csrDer: await newCertRequest(['bad.certgate.test']),
      solvers: [suite.responders.http01(calls, { corrupt: true })],
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
    assert.equal(suite.pebble.certificatesIssued(), issuedBefore);
  });

  test('a missing solver type fails with a clear error and presents nothing', async () => {
    const client = suite.newAccount();
    const calls: string[] = [];
    // a challenge type Pebble does not offer
    const fake = { ...suite.responders.http01(calls), type: 'http-02' } as unknown as ChallengeSolver;
    await assert.rejects(
      obtainCertificate(client, { domains: ['nosolver.certgate.test'], csrDer: await newCertRequest(['nosolver.certgate.test']), solvers: [fake] }),
      (e: unknown) => e instanceof AcmeError && e.step === 'challenge' && e.domain === 'nosolver.certgate.test' && /no solver/.test(e.message),
    );
    assert.deepEqual(calls, []);
  });

  test('the overall timeout aborts and still cleans up', async () => {
    const client = suite.newAccount();
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

describe('obtainCertificate, Pebble variants', () => {
  const variant = respondersWithStops();
  const { responders, stops } = variant;

  test('valid authorizations are skipped (PEBBLE_AUTHZREUSE=100)', async () => {
    const pebble = await variant.startPebble({ env: { PEBBLE_AUTHZREUSE: '100' }, certificateValidityPeriod: 3600 });
    const client = AcmeAccount.connect({ directoryUrl: pebble.directoryUrl, accountKey: generateAccountKey(), trustedRoots: [pebble.listenerCaPem] });
    stops.push(() => client.transport.close());
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

  test('startPebble exposes challtestsrv and stops cleanly', async () => {
    const pebble = await variant.startPebble();
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
