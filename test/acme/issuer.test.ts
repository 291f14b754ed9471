// AcmeIssuer.renewalWindow: the issuer answers ARI for the certificates it issued, over its own
// connection to the CA (a fault-injecting proxy in front of real Pebble that adds renewalInfo),
// without loading or registering an account for it.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { AcmeIssuer } from '../../src/acme/issuer.ts';
import { silentLogger } from '../../src/util/log.ts';
import { FileStorage } from '../../src/storage/file/store.ts';
import { startAcmeProxy, type AcmeFaultProxy } from '../support/acme-proxy.ts';
import { startPebbleOnFreePorts, type PebbleHandle } from '../support/pebble.ts';
import { acmeSection } from '../support/config.ts';
import { tmpDir } from '../support/tmp.ts';

let pebble: PebbleHandle;
let proxy: AcmeFaultProxy;

before(async () => {
  ({ pebble } = await startPebbleOnFreePorts());
  proxy = await startAcmeProxy(pebble);
});

after(async () => {
  await proxy?.close();
  await pebble?.stop();
});

test('renewalWindow: the CA window with Retry-After, asked without an account; null when the CA offers no ARI', async (t) => {
  const storage = await FileStorage.open(await tmpDir(t, 'certgate-issuer-'));
  const acme = acmeSection({ timeout: '10s' });
  const issuer = new AcmeIssuer(acme, { directory: proxy.directoryUrl, trustedRoots: [await readFile(proxy.listenerCaPath, 'utf8')] }, { solvers: [], storage, logger: silentLogger() });
  t.after(() => issuer.close());
  const accountsBefore = pebble.accountsCreated();
  proxy.setRenewalInfo((certId) => (certId === 'aaa.bbb' ? { start: '2030-01-01T00:00:00Z', end: '2030-01-02T00:00:00Z', retryAfterSeconds: 42 } : undefined));

  const window = await issuer.renewalWindow('aaa.bbb', 'a.issuer.test');
  assert.deepEqual(window, { start: Date.parse('2030-01-01T00:00:00Z'), end: Date.parse('2030-01-02T00:00:00Z'), retryAfterMs: 42_000 });
  assert.deepEqual(proxy.renewalInfoRequests().slice(-1), ['aaa.bbb']);
  await assert.rejects(issuer.renewalWindow('unknown.id', 'b.issuer.test'), (err: Error) => /renewal-info for b\.issuer\.test/.test(err.message));

  assert.equal(pebble.accountsCreated(), accountsBefore, 'no account registered for ARI');
  assert.deepEqual(await storage.list('accounts/'), [], 'no account stored for ARI');

  const plain = new AcmeIssuer(acme, { directory: pebble.directoryUrl, trustedRoots: [pebble.listenerCaPem] }, { solvers: [], storage, logger: silentLogger() });
  t.after(() => plain.close());
  assert.equal(await plain.renewalWindow('aaa.bbb'), null, 'Pebble itself offers no renewalInfo');
});
