// Admin API with several issuers (real Pebble): the first issuer is down, so the certificate
// comes from the second. Status, pre-issue, renew and delete-with-revocation must find it under
// the second issuer's CA and revoke it there, with that issuer's account.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { caIdFromDirectory, keys } from '../../src/storage/keys.ts';
import { adminCall } from '../support/admin.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { startPebble, type PebbleHandle } from '../support/pebble.ts';
import { freePort } from '../support/ports.ts';

const TOKEN = 'e2e-admin-issuers-token-0123';

interface CertificateStatus {
  domain: string;
  ca: string;
  directory: string;
  serialNumber: string;
  fingerprint256: string;
}

describe('admin API with two issuers, the first down', () => {
  let pebble: PebbleHandle;
  let gw: TestGateway;
  let admin: number;
  let pebbleCa: string;
  const call = (method: string, path: string) => adminCall(admin, method, path, { token: TOKEN });

  before(async () => {
    const httpsPort = await freePort();
    const httpPort = await freePort();
    pebble = await startPebble({ httpPort, tlsPort: httpsPort });
    const deadDirectory = `https://127.0.0.1:${await freePort()}/dir`; // nothing listens here
    pebbleCa = caIdFromDirectory(pebble.directoryUrl);
    gw = await startTestGateway({
      pebble,
      httpsPort,
      httpPort,
      config: {
        onDemand: { allow: ['*.issuers.test'] },
        admin: { token: TOKEN },
        acme: { directory: undefined, issuers: [{ directory: deadDirectory }, { directory: pebble.directoryUrl }] },
      },
    });
    admin = gw.gateway.adminPort!;
  });

  after(async () => {
    await gw?.close();
    await pebble?.stop();
  });

  test('issue, status, renew and revoke find the certificate under the second issuer’s CA', async () => {
    const name = 'second.issuers.test';
    const issued = await call('POST', `/v1/domains/${name}/issue`);
    assert.equal(issued.status, 200, issued.body);
    const fromIssue = (issued.json as { certificate: CertificateStatus | null }).certificate;
    assert.equal(fromIssue?.ca, pebbleCa, `the issue answer describes the certificate: ${issued.body}`);

    const status = await call('GET', `/v1/certificates/${name}`);
    assert.equal(status.status, 200, status.body);
    const s = status.json as CertificateStatus;
    assert.equal(s.ca, pebbleCa);
    assert.equal(s.directory, pebble.directoryUrl);
    assert.equal(await pebble.certificateStatus(s.serialNumber), 'Valid');

    const renewed = await call('POST', `/v1/certificates/${name}/renew`);
    assert.equal(renewed.status, 200, renewed.body);
    const r = renewed.json as CertificateStatus | null;
    assert.equal(r?.ca, pebbleCa, `the renew answer describes the new certificate: ${renewed.body}`);
    assert.notEqual(r.fingerprint256, s.fingerprint256);

    const deleted = await call('DELETE', `/v1/certificates/${name}?revoke=true`);
    assert.equal(deleted.status, 204, deleted.body);
    assert.equal(await pebble.certificateStatus(r.serialNumber), 'Revoked', 'revoked at the CA that issued it');
    assert.equal(await gw.storage.get(keys.certificate(pebbleCa, name)), null, 'deleted from storage');
    assert.equal((await call('GET', `/v1/certificates/${name}`)).status, 404);
  });
});
