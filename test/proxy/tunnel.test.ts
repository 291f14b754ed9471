// The upgrade path (src/proxy/tunnel.ts) against request smuggling: nothing the client sends
// after its upgrade request reaches an upstream that did not switch protocols; upgrade requests
// with a body, an absolute-form target naming another host, or `Upgrade: h2c` are refused.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect as netConnect } from 'node:net';
import { describe, it, type TestContext } from 'node:test';
import { webSocketEcho } from '../support/upstream.ts';
import { handshake, proxied, rawUpstream, readAll, recordingUpstream, webSocketRoundTrip } from './helpers.ts';

const T = { timeout: 20_000 };
const HOST = 'app.example.test';

/** Open a raw connection to the front, write `data` (one write: one packet on loopback), read until closed. */
async function exchange(t: TestContext, port: number, data: string | Buffer): Promise<string> {
  const socket = netConnect({ host: '127.0.0.1', port });
  t.after(() => socket.destroy());
  await once(socket, 'connect');
  const answer = readAll(socket);
  socket.write(data);
  return answer;
}

const SMUGGLED = `GET /smuggled HTTP/1.1\r\nHost: internal.example\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n`;

describe('upgrade path (request smuggling)', () => {
  it('an upstream that does not switch protocols sees only the upgrade request, never one sent after it in the same packet', T, async (t) => {
    // It answers after 100 ms: time enough to receive whatever else it was sent (any delay would do).
    const up = await rawUpstream(t, 100);
    const { front } = await proxied(t, { upstream: up.origin });

    const answer = await exchange(t, front.port, handshake(HOST) + SMUGGLED);
    await up.idle();
    assert.deepEqual(up.requestLines(), ['GET /ws HTTP/1.1'], 'the upstream saw exactly one request');
    assert.doesNotMatch(up.received.join(''), /smuggled|internal\.example/);
    // The upstream's own answer reaches the client, marked as the last on the connection.
    assert.match(answer, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(answer, /\r\nConnection: close\r\n/i);
    assert.doesNotMatch(answer, /keep-alive/i);
    assert.match(answer, /\r\n\r\nplain$/);
  });

  it('bytes sent later, while the upstream has not answered yet, are not forwarded either', T, async (t) => {
    const up = await recordingUpstream(t, 200);
    const { front } = await proxied(t, { upstream: up.origin });
    const socket = netConnect({ host: '127.0.0.1', port: front.port });
    t.after(() => socket.destroy());
    await once(socket, 'connect');
    const answer = readAll(socket);
    socket.write(handshake(HOST));
    await up.arrived(1);
    socket.write(SMUGGLED);
    assert.match(await answer, /^HTTP\/1\.1 200 OK\r\n[\s\S]*plain GET \/ws$/);
    await up.idle();
    assert.deepEqual(up.requests, ['GET /ws']);
  });

  it('an upgrade request with a body (Content-Length or Transfer-Encoding) is refused with 400 and nothing reaches the upstream', T, async (t) => {
    const up = await rawUpstream(t);
    const { front } = await proxied(t, { upstream: up.origin });
    const withLength = handshake(HOST).replace('\r\n\r\n', `\r\nContent-Length: ${SMUGGLED.length}\r\n\r\n`) + SMUGGLED;
    const lengthAnswer = await exchange(t, front.port, withLength);
    assert.match(lengthAnswer, /^HTTP\/1\.1 400 Bad Request\r\n[\s\S]*must not have a body\n$/);

    const chunk = SMUGGLED.length.toString(16);
    const chunked = handshake(HOST).replace('\r\n\r\n', '\r\nTransfer-Encoding: chunked\r\n\r\n') + `${chunk}\r\n${SMUGGLED}\r\n0\r\n\r\n`;
    const chunkedAnswer = await exchange(t, front.port, chunked);
    assert.match(chunkedAnswer, /^HTTP\/1\.1 400 Bad Request\r\n/);
    assert.equal(up.connections, 0, 'nothing was sent upstream');
  });

  it('an absolute-form target becomes origin-form when it names the Host, and is refused when it names another host', T, async (t) => {
    const up = await recordingUpstream(t, 0, webSocketEcho('echo:'));
    const { front } = await proxied(t, { upstream: up.origin });

    const socket = netConnect({ host: '127.0.0.1', port: front.port });
    t.after(() => socket.destroy());
    await once(socket, 'connect');
    const sameHost = (request: string) => request.replace('GET /ws HTTP/1.1', `GET http://${HOST.toUpperCase()}:443/ws?x=1 HTTP/1.1`);
    assert.equal(await webSocketRoundTrip(socket, HOST, 'hi', false, sameHost), 'echo:hi');
    assert.equal(up.upgrades[0]?.url, '/ws?x=1', 'the upstream gets origin-form');

    const other = handshake(HOST).replace('GET /ws HTTP/1.1', 'GET http://internal.example/admin HTTP/1.1');
    const answer = await exchange(t, front.port, other);
    assert.match(answer, /^HTTP\/1\.1 400 Bad Request\r\n[\s\S]*another host/);
    assert.equal(up.upgrades.length, 1, 'the refused request never reached the upstream');
    assert.equal(up.connections, 1);
  });

  it('Upgrade: h2c is refused (400), not tunnelled', T, async (t) => {
    const up = await recordingUpstream(t);
    const { front } = await proxied(t, { upstream: up.origin });
    const h2c =
      `GET / HTTP/1.1\r\nHost: ${HOST}\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n` +
      'HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n' +
      'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n';
    const answer = await exchange(t, front.port, h2c);
    assert.match(answer, /^HTTP\/1\.1 400 Bad Request\r\n[\s\S]*upgrade to h2c is not supported\n$/);
    const listed = await exchange(t, front.port, handshake(HOST).replace('Upgrade: websocket', 'Upgrade: websocket, H2C'));
    assert.match(listed, /^HTTP\/1\.1 400 Bad Request\r\n/);
    assert.equal(up.connections, 0);
  });

  it('a WebSocket still works end to end, also with its first frame in the handshake packet', T, async (t) => {
    const up = await recordingUpstream(t, 0, webSocketEcho('echo:'));
    const { front } = await proxied(t, { upstream: up.origin });
    for (const together of [false, true]) {
      const socket = netConnect({ host: '127.0.0.1', port: front.port });
      t.after(() => socket.destroy());
      await once(socket, 'connect');
      assert.equal(await webSocketRoundTrip(socket, HOST, `frame ${together}`, together), `echo:frame ${together}`);
    }
    const ws = new WebSocket(`ws://127.0.0.1:${front.port}/chat`);
    t.after(() => ws.close());
    const reply = await new Promise<string>((resolve, reject) => {
      ws.addEventListener('open', () => ws.send('hello'));
      ws.addEventListener('message', (ev) => resolve(String(ev.data)));
      ws.addEventListener('error', () => reject(new Error('websocket error')));
    });
    assert.equal(reply, 'echo:hello');
    assert.deepEqual(up.requests, [], 'no plain request reached the upstream');
  });
});
