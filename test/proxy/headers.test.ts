// Forwarded / X-Real-IP from clients are handled like X-Forwarded-For: the client's values never
// reach the upstream as they were; X-Real-IP is the connection's peer address.
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
