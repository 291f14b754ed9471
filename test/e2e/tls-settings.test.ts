// Issue 13 acceptance (TLS settings of a modern edge): by default the HTTPS listener offers TLS
// 1.2+ with ECDHE and AEAD suites only (no CBC, no DHE) over X25519/P-256/P-384, so a client that
// offers only CBC suites, only secp521r1, or at most TLS 1.1 is refused, while a modern client gets
// its real certificate. `tls.minVersion`, `tls.ciphers` and `tls.curves` change that.
import assert from 'node:assert/strict';
import { connect, type ConnectionOptions } from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { httpsGet } from '../support/clients.ts';
import { problems } from '../support/config.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { startPebbleOnFreePorts, type PebbleHandle } from '../support/pebble.ts';
import { freePort } from '../support/ports.ts';
import { echoHandler, startUpstream, type FakeUpstream } from '../support/upstream.ts';

interface Negotiated {
  protocol: string | null;
  cipher: string;
  group: string | undefined;
}

/** One TLS handshake with the given client settings (no verification: protocol checks only). */
function handshake(port: number, opts: ConnectionOptions): Promise<Negotiated> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, servername: 'tls.allowed.test', rejectUnauthorized: false, ALPNProtocols: ['http/1.1'], ...opts }, () => {
      const result = { protocol: socket.getProtocol(), cipher: socket.getCipher().name, group: (socket.getEphemeralKeyInfo() as { name?: string } | null)?.name };
      socket.end();
      resolve(result);
    });
    socket.setTimeout(30_000, () => socket.destroy(new Error('handshake timeout')));
    socket.on('error', reject);
  });
}

// Every TLS 1.2 CBC suite with ECDHE an OpenSSL client can offer (SHA-1 and SHA-2 HMAC).
const CBC_ONLY = 'ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384:ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA:ECDHE-RSA-AES128-SHA256:ECDHE-RSA-AES256-SHA384';
const TLS12 = { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' } as const;

describe('TLS settings: Mozilla intermediate (ECDHE + AEAD) by default', () => {
  let pebble: PebbleHandle;
  let gw: TestGateway;
  let custom: TestGateway;
  let upstream: FakeUpstream;
  let httpsPort: number;
  let customPort: number;
  let root: string;

  before(async () => {
    let httpPort: number;
    ({ pebble, httpsPort, httpPort, root } = await startPebbleOnFreePorts());
    upstream = await startUpstream(echoHandler('app'));
    gw = await startTestGateway({ pebble, httpsPort, httpPort, config: { onDemand: { allow: ['tls.allowed.test'] }, proxy: { upstream: upstream.origin } } });
    // A second gateway with the settings changed; Pebble never validates against it, so its
    // handshakes get the fallback certificate, which is all a protocol check needs.
    customPort = await freePort();
    custom = await startTestGateway({
      pebble,
      httpsPort: customPort,
      httpPort: await freePort(),
      config: { tls: { minVersion: 'TLSv1.3', ciphers: `TLS_AES_128_GCM_SHA256:${CBC_ONLY}`, curves: 'P-521' }, proxy: { upstream: upstream.origin } },
    });
  });

  after(async () => {
    await custom?.close();
    await gw?.close();
    await upstream?.close();
    await pebble?.stop();
  });

  test('a modern client gets the real certificate over TLS 1.3', async () => {
    const res = await httpsGet('tls.allowed.test', httpsPort, root);
    assert.equal(res.status, 200);
    const n = await handshake(httpsPort, {});
    assert.equal(n.protocol, 'TLSv1.3');
  });

  test('a TLS 1.2 client gets an ECDHE AEAD suite', async () => {
    const n = await handshake(httpsPort, TLS12);
    assert.equal(n.protocol, 'TLSv1.2');
    assert.match(n.cipher, /^ECDHE-(ECDSA|RSA)-(AES(128|256)-GCM-SHA(256|384)|CHACHA20-POLY1305)$/);
  });

  test('a client offering only CBC suites is refused', async () => {
    await assert.rejects(handshake(httpsPort, { ...TLS12, ciphers: CBC_ONLY }), /handshake failure|no shared cipher|ECONNRESET/i);
  });

  test('a client offering only DHE suites is refused', async () => {
    await assert.rejects(handshake(httpsPort, { ...TLS12, ciphers: 'DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384' }), /handshake failure|no shared cipher|ECONNRESET/i);
  });

  test('a client offering only secp521r1 is refused; X25519, P-256 and P-384 are accepted', async () => {
    await assert.rejects(handshake(httpsPort, { ...TLS12, ecdhCurve: 'P-521' }), /handshake failure|ECONNRESET/i);
    for (const curve of ['X25519', 'P-256', 'P-384']) {
      const n = await handshake(httpsPort, { ecdhCurve: curve });
      assert.equal(n.group, curve === 'P-256' ? 'prime256v1' : curve === 'P-384' ? 'secp384r1' : curve, curve);
    }
  });

  test('a TLS 1.1 client is refused', async () => {
    // SECLEVEL=0 so that our own OpenSSL agrees to send a TLS 1.1 ClientHello at all.
    await assert.rejects(
      handshake(httpsPort, { minVersion: 'TLSv1.1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' }),
      /protocol version|unsupported protocol|ECONNRESET/i,
    );
  });

  test('tls.minVersion, tls.ciphers and tls.curves change what is offered', async () => {
    await assert.rejects(handshake(customPort, TLS12), /protocol version|ECONNRESET/i);
    await assert.rejects(handshake(customPort, { ecdhCurve: 'X25519' }), /handshake failure|ECONNRESET/i);
    const n = await handshake(customPort, { ecdhCurve: 'P-521' });
    assert.equal(n.protocol, 'TLSv1.3');
    assert.equal(n.cipher, 'TLS_AES_128_GCM_SHA256');
    assert.equal(n.group, 'secp521r1');
  });

  test('settings OpenSSL cannot use are refused when the config is read', () => {
    assert.match(problems({ tls: { ciphers: 'NO-SUCH-CIPHER' } }), /tls\.ciphers/);
    assert.match(problems({ tls: { curves: 'P-999' } }), /tls\.curves/);
    assert.match(problems({ tls: { minVersion: 'TLSv1.1' } }), /TLSv1\.2, TLSv1\.3/);
  });
});
