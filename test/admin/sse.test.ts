// The admin event stream: keep-alive comments on an idle stream, events in order, and a client
// that stops reading is disconnected once its unsent output passes the bound (memory stays flat).
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { EventStream } from '../../src/admin/sse.ts';
import { openEvents } from '../support/admin.ts';

describe('EventStream', () => {
  let server: Server;
  let stream: EventStream;
  let port: number;

  before(async () => {
    stream = new EventStream({ keepAliveMs: 50, maxBufferedBytes: 256 * 1024 });
    server = createServer((req, res) => stream.add(res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  after(async () => {
    stream.close();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  test('keep-alive comments while idle; events arrive in order with their type', async () => {
    const client = await openEvents(port);
    try {
      // Every 50 ms: wait for three, however slowly they come on a loaded machine.
      const deadline = Date.now() + 10_000;
      while (client.comments < 3 && Date.now() < deadline) await sleep(20);
      assert.ok(client.comments >= 3, `keep-alive comments: ${client.comments}`);
      assert.equal(client.events.length, 0, 'comments only, no events, while idle');
      stream.send('issuance-started', { domain: 'a.example', n: 1 });
      stream.send('issuance-succeeded', { domain: 'a.example', n: 2 });
      await client.waitFor((e) => e.event === 'issuance-succeeded', 10_000);
      assert.deepEqual(client.events.map((e) => [e.event, e.data.n]), [['issuance-started', 1], ['issuance-succeeded', 2]]);
    } finally {
      client.close();
    }
  });

  test('a client that never reads is dropped once over the buffer bound; a reading client is not', async () => {
    const reader = await openEvents(port);
    // A raw client that sends the request and then never reads a byte.
    const stalled = connect(port, '127.0.0.1');
    await new Promise<void>((resolve) => stalled.once('connect', resolve));
    stalled.pause();
    stalled.write('GET /v1/events HTTP/1.1\r\nHost: x\r\n\r\n');
    const deadline = Date.now() + 5000;
    while (stream.clients < 2 && Date.now() < deadline) await sleep(10);
    assert.equal(stream.clients, 2);
    try {
      const payload = 'x'.repeat(16 * 1024);
      // Far more than the kernel's socket buffers plus the 256 KiB bound.
      for (let i = 0; i < 2000 && stream.clients > 1; i++) {
        stream.send('bulk', { i, payload });
        if (i % 8 === 0) await sleep(10); // let the reading client drain
      }
      await sleep(200);
      assert.equal(stream.clients, 1, 'the stalled client was dropped');
      assert.ok(stalled.destroyed || stalled.readableEnded || (await waitClosed(stalled)), 'its connection is closed');
      stream.send('after', { ok: true });
      await reader.waitFor((e) => e.event === 'after', 5000);
    } finally {
      reader.close();
      stalled.destroy();
    }
  });
});

function waitClosed(socket: import('node:net').Socket): Promise<boolean> {
  return new Promise((resolve) => {
    socket.resume();
    socket.once('close', () => resolve(true));
    setTimeout(() => resolve(false), 3000);
  });
}
