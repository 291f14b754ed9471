// Forwarded / X-Real-IP from clients are handled like X-Forwarded-For: the client's values never
// reach the upstream as they were; X-Real-IP is the connection's peer address. X-Forwarded-For /
// -Proto are kept only from proxy.trustedProxies.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { echoHandler, webSocketEcho } from '../support/upstream.ts';
import { proxied, send, upstream } from './helpers.ts';

const T = { timeout: 15_000 };

describe('forwarded headers', () => {
  it('drops a client Forwarded and replaces X-Real-IP with the peer address (plain and upgrade paths)', T, async (t) => {
    const up = await upstream(t, echoHandler('up'), { onUpgrade: webSocketEcho() });
    const { front } = await proxied(t, { upstream: up.origin });

    const reply = await send(front.port, {
      host: 'app.example.test',
      headers: {
        forwarded: 'for=203.0.113.9;proto=https;host=bank.example',
        'x-real-ip': '203.0.113.9',
        'http2-settings': 'AAMAAABkAARAAAAAAAIAAAAA',
      },
    });
    const echo = JSON.parse(reply.body.toString('utf8')) as { headers: Record<string, string | undefined>; rawHeaders: string[] };
    assert.equal(echo.headers.forwarded, undefined, 'a client Forwarded must not reach the upstream');
    assert.equal(echo.headers['x-real-ip'], '127.0.0.1');
    assert.equal(echo.rawHeaders.filter((n) => n.toLowerCase() === 'x-real-ip').length, 1, 'exactly one X-Real-IP');
    assert.equal(echo.headers['http2-settings'], undefined, 'HTTP2-Settings is connection-specific');

    const ws = new WebSocket(`ws://127.0.0.1:${front.port}/`, { headers: { forwarded: 'for=198.51.100.1', 'x-real-ip': '198.51.100.1', 'x-probe': 'sent' } } as unknown as string[]);
    t.after(() => ws.close());
    await new Promise<void>((resolve, reject) => {
      ws.addEventListener('open', () => resolve());
      ws.addEventListener('error', () => reject(new Error('websocket error')));
    });
    const head = up.upgrades[0];
    assert.ok(head);
    assert.equal(head.headers['x-probe'], 'sent', 'the client did send its own headers');
    assert.equal(head.headers.forwarded, undefined);
    assert.equal(head.headers['x-real-ip'], '127.0.0.1');
  });
});

describe('X-Forwarded-For / -Proto and proxy.trustedProxies', () => {
  const spoofed = { 'x-forwarded-for': '203.0.113.9, 198.51.100.2', 'x-forwarded-proto': 'https' };

  it('from a client outside trustedProxies (the default: none) they are replaced, on both paths', T, async (t) => {
    const up = await upstream(t, echoHandler('up'), { onUpgrade: webSocketEcho() });
    const { front } = await proxied(t, { upstream: up.origin });
    const echo = JSON.parse((await send(front.port, { host: 'app.example.test', headers: spoofed })).body.toString('utf8')) as { headers: Record<string, string> };
    assert.equal(echo.headers['x-forwarded-for'], '127.0.0.1');
    assert.equal(echo.headers['x-forwarded-proto'], 'http');

    const ws = new WebSocket(`ws://127.0.0.1:${front.port}/`, { headers: spoofed } as unknown as string[]);
    t.after(() => ws.close());
    await new Promise<void>((resolve, reject) => {
      ws.addEventListener('open', () => resolve());
      ws.addEventListener('error', () => reject(new Error('websocket error')));
    });
    assert.equal(up.upgrades[0]?.headers['x-forwarded-for'], '127.0.0.1');
    assert.equal(up.upgrades[0]?.headers['x-forwarded-proto'], 'http');
  });

  it('from a client inside trustedProxies they are kept, the client appended to X-Forwarded-For', T, async (t) => {
    const up = await upstream(t, echoHandler('up'), { onUpgrade: webSocketEcho() });
    const { front } = await proxied(t, { upstream: up.origin, trustedProxies: ['10.0.0.0/8', '127.0.0.1'] });
    const echo = JSON.parse((await send(front.port, { host: 'app.example.test', headers: spoofed })).body.toString('utf8')) as { headers: Record<string, string> };
    assert.equal(echo.headers['x-forwarded-for'], '203.0.113.9, 198.51.100.2, 127.0.0.1');
    assert.equal(echo.headers['x-forwarded-proto'], 'https');
    assert.equal(echo.headers['x-real-ip'], '127.0.0.1');

    // Without incoming fields: the client address and the connection's own scheme.
    const bare = JSON.parse((await send(front.port, { host: 'app.example.test' })).body.toString('utf8')) as { headers: Record<string, string> };
    assert.equal(bare.headers['x-forwarded-for'], '127.0.0.1');
    assert.equal(bare.headers['x-forwarded-proto'], 'http');

    const ws = new WebSocket(`ws://127.0.0.1:${front.port}/`, { headers: spoofed } as unknown as string[]);
    t.after(() => ws.close());
    await new Promise<void>((resolve, reject) => {
      ws.addEventListener('open', () => resolve());
      ws.addEventListener('error', () => reject(new Error('websocket error')));
    });
    assert.equal(up.upgrades[0]?.headers['x-forwarded-for'], '203.0.113.9, 198.51.100.2, 127.0.0.1');
    assert.equal(up.upgrades[0]?.headers['x-forwarded-proto'], 'https');
  });

  it('a client trusted only by another range is not trusted', T, async (t) => {
    const up = await upstream(t, echoHandler('up'));
    const { front } = await proxied(t, { upstream: up.origin, trustedProxies: ['10.0.0.0/8', '::1'] });
    const echo = JSON.parse((await send(front.port, { host: 'app.example.test', headers: spoofed })).body.toString('utf8')) as { headers: Record<string, string> };
    assert.equal(echo.headers['x-forwarded-for'], '127.0.0.1');
  });
});
