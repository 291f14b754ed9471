// Issue 2 acceptance, proxy side, through the real gateway (TLS with Pebble-issued
// certificates): routes pick the right upstream, forwarded headers are right, a WebSocket
// echoes through, an upstream that is down gives 502, and plain HTTP redirects to HTTPS.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { connect } from 'node:tls';
import { httpsGet } from '../support/clients.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { startPebbleOnFreePorts, type PebbleHandle } from '../support/pebble.ts';
import { freePort } from '../support/ports.ts';
import { decodeFrames, echoHandler, encodeFrame, startUpstream, webSocketEcho, type FakeUpstream } from '../support/upstream.ts';

describe('proxying through the gateway', () => {
  let pebble: PebbleHandle;
  let gw: TestGateway;
  let root: string;
  let httpsPort: number;
  let httpPort: number;
  let apps: FakeUpstream;
  let shop: FakeUpstream;
  let org: FakeUpstream;

  before(async () => {
    ({ pebble, httpsPort, httpPort, root } = await startPebbleOnFreePorts());
    apps = await startUpstream(echoHandler('default'));
    shop = await startUpstream(echoHandler('shop'), { onUpgrade: webSocketEcho('echo:') });
    org = await startUpstream(echoHandler('org'));
    const downPort = await freePort();
    gw = await startTestGateway({
      pebble,
      httpsPort,
      httpPort,
      config: {
        onDemand: { allow: ['*.customers.test', 'shop.example.com', '**.example.org', 'down.example.net'] },
        proxy: {
          upstream: apps.origin,
          routes: [
            { hosts: ['shop.example.com', 'ws.customers.test'], upstream: shop.origin },
            { hosts: ['**.example.org'], upstream: org.origin },
            { hosts: ['down.example.net'], upstream: `http://127.0.0.1:${downPort}` },
          ],
        },
      },
    });
  });

  after(async () => {
    await gw?.close();
    await Promise.all([apps?.close(), shop?.close(), org?.close()]);
    await pebble?.stop();
  });

  test('routes pick the right upstream; Host kept; X-Forwarded-* set', async () => {
    const cases: Array<[string, string]> = [
      ['blog.customers.test', 'default'],
      ['shop.example.com', 'shop'],
      ['a.example.org', 'org'],
      ['deep.a.example.org', 'org'],
    ];
    for (const [host, upstream] of cases) {
      const res = await httpsGet(host, httpsPort, root, '/some/path?q=1');
      assert.equal(res.status, 200, host);
      const seen = JSON.parse(res.body);
      assert.equal(seen.name, upstream, `${host} goes to ${upstream}`);
      assert.equal(seen.url, '/some/path?q=1');
      assert.equal(seen.headers.host, host, 'original Host kept');
      assert.equal(seen.headers['x-forwarded-proto'], 'https');
      assert.equal(seen.headers['x-forwarded-host'], host);
      assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1');
    }
  });

  test('a WebSocket echoes through (wss → ws upstream)', async () => {
    const message = await new Promise<string>((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port: httpsPort, servername: 'ws.customers.test', ca: root, ALPNProtocols: ['http/1.1'] }, () => {
        socket.write(
          'GET /chat HTTP/1.1\r\nHost: ws.customers.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
            `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
        );
      });
      let buf = Buffer.alloc(0);
      let upgraded = false;
      socket.on('data', (chunk: Buffer) => {
        buf = Buffer.concat([buf, chunk]);
        if (!upgraded) {
          const end = buf.indexOf('\r\n\r\n');
          if (end === -1) return;
          const head = buf.subarray(0, end).toString();
          if (!head.startsWith('HTTP/1.1 101')) return reject(new Error(`no upgrade: ${head}`));
          upgraded = true;
          buf = buf.subarray(end + 4);
          socket.write(encodeFrame(1, Buffer.from('hello through certgate'), randomBytes(4)));
        }
        const { frames } = decodeFrames(buf);
        if (frames[0]) {
          socket.end();
          resolve(frames[0].payload.toString());
        }
      });
      socket.on('error', reject);
      socket.setTimeout(20_000, () => socket.destroy(new Error('websocket timeout')));
    });
    assert.equal(message, 'echo:hello through certgate');
  });

  test('upstream down: 502 with a short body', async () => {
    const res = await httpsGet('down.example.net', httpsPort, root);
    assert.equal(res.status, 502);
    assert.match(res.body, /502 Bad Gateway/);
  });

  test('plain HTTP redirects to HTTPS (308), challenges aside', async () => {
    const res = await new Promise<{ status: number; location: string | undefined }>((resolve, reject) => {
      httpRequest({ host: '127.0.0.1', port: httpPort, path: '/x?y=1', headers: { host: 'blog.customers.test' } }, (r) => {
        r.resume();
        resolve({ status: r.statusCode ?? 0, location: r.headers.location });
      })
        .on('error', reject)
        .end();
    });
    assert.equal(res.status, 308);
    assert.equal(res.location, `https://blog.customers.test:${httpsPort}/x?y=1`);
  });
});
