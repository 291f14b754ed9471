// The handshake path's step 3 (managed certificates, src/issuance/managed.ts) on real TLS
// sockets, with a stand-in manager that counts what reaches it: `*.wild.test` + `wild.test`
// cover `a.wild.test` and `wild.test` (served from memory, no manager call, so no order and no
// policy), not `x.y.wild.test` (one label only) nor other names, which go on to on-demand logic.
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { createSecureContext, createServer } from 'node:tls';
import { createSelfSignedCertificate } from '../../src/acme/x509.ts';
import type { ChallengeSolver } from '../../src/acme/authorize.ts';
import { ManagedCertificates } from '../../src/issuance/managed.ts';
import type { CertificateManager, ObtainOutcome } from '../../src/issuance/manager.ts';
import { CertificateCache } from '../../src/tls/cache.ts';
import { createHandshakeCallbacks } from '../../src/tls/handshake.ts';
import { silentLogger } from '../../src/util/log.ts';
import { peerCertificate } from '../support/clients.ts';
import { multiNameCertificate } from '../support/certificates.ts';

test('a managed *.wild.test + wild.test covers one label below and the name itself, ahead of on-demand logic', async (t) => {
  const fallback = await createSelfSignedCertificate('fallback.invalid');
  const cache = new CertificateCache(100);
  const solver = { type: 'http-01' } as unknown as ChallengeSolver;
  const managed = new ManagedCertificates([{ names: ['*.wild.test', 'wild.test'] }], cache, () => [solver]);
  const reached: string[] = [];
  const manager = {
    obtain: async (domain: string): Promise<ObtainOutcome> => {
      reached.push(domain);
      return { kind: 'denied', reason: 'stand-in: not allowed' } as ObtainOutcome;
    },
  } as unknown as CertificateManager;
  const { SNICallback, ALPNCallback } = createHandshakeCallbacks({
    cache,
    manager,
    managed,
    tlsAlpn: null,
    fallback: createSecureContext({ cert: fallback.certPem, key: fallback.keyPem }),
    handshakeWaitMs: 5_000,
    logger: silentLogger(),
  });
  const server = createServer({ SNICallback, ALPNCallback, cert: fallback.certPem, key: fallback.keyPem } as Parameters<typeof createServer>[0]);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => server.close());
  const port = (server.address() as AddressInfo).port;
  const fallbackFp = (await peerCertificate(port, 'fallback.invalid')).fingerprint256;
  reached.length = 0;

  // Before the certificate is held: covered names get the fallback, and still never an order.
  assert.equal((await peerCertificate(port, 'a.wild.test')).fingerprint256, fallbackFp);
  assert.deepEqual(reached, [], 'a covered name never reaches the manager, even before its certificate is held');

  const pair = await multiNameCertificate(['*.wild.test', 'wild.test']);
  const entry = managed.add({ domain: '*.wild.test', ca: 'test-ca', certPem: pair.certPem, keyPem: pair.keyPem, notBefore: new Date(), notAfter: pair.notAfter, fingerprint256: 'x' });
  // Even evicted from the LRU cache, the managed certificate stays pinned.
  cache.delete(entry.domain);

  const served = new Map<string, string>();
  for (const name of ['a.wild.test', 'b.wild.test', 'wild.test', 'x.y.wild.test', 'other.test']) {
    served.set(name, (await peerCertificate(port, name)).fingerprint256);
  }
  const managedFp = served.get('a.wild.test')!;
  assert.notEqual(managedFp, fallbackFp);
  assert.equal(served.get('b.wild.test'), managedFp);
  assert.equal(served.get('wild.test'), managedFp);
  assert.equal(served.get('x.y.wild.test'), fallbackFp, '*. covers exactly one label');
  assert.equal(served.get('other.test'), fallbackFp);
  assert.deepEqual(reached, ['x.y.wild.test', 'other.test'], 'only names not covered go on to on-demand logic');
});
