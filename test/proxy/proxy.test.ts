import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Agent, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect as netConnect } from 'node:net';
import { once } from 'node:events';
import { connect as tlsConnect } from 'node:tls';
import { domainToASCII } from 'node:url';
import { before, describe, it } from 'node:test';
import { freePort } from '../support/ports.ts';
import {
  echoHandler,
  webSocketEcho,
  type FakeUpstream,
} from '../support/upstream.ts';
import { captureLogs, handshake, proxied, readAll, selfSignedCert, send, upstream, waitFor, webSocketRoundTrip, type TestCert } from './helpers.ts';

const T = { timeout: 15_000 };

interface Echo {
  name: string;
  method: string;
  url: string;
  headers: Record<string, string | string[] | undefined>;
  rawHeaders: string[];
  bodyLength: number;
}

function json(body: Buffer): Echo {
  return JSON.parse(body.toString('utf8')) as Echo;
}

describe('ReverseProxy', () => {
  let cert: TestCert;
  before(() => {
    cert = selfSignedCert();
  });

  it('routes by Host: exact names, most specific wildcard, default', T, async (t) => {
    const a = await upstream(t, echoHandler('a'));
    const b = await upstream(t, echoHandler('b'));
    const c = await upstream(t, echoHandler('c'));
    const d = await upstream(t, echoHandler('d'));
    const v6 = await upstream(t, echoHandler('v6'));
    const { proxy, front } = await proxied(t, {
      routes: [
        { hosts: ['app.example.test', 'Ünï.example.test'], upstream: a.origin },
        { hosts: ['**.example.test'], upstream: b.origin },
        // app.example.test is already taken by the first route: first route wins.
        { hosts: ['**.deep.example.test', 'app.example.test'], upstream: c.origin },
        { hosts: ['[::1]'], upstream: v6.origin },
      ],
      upstream: d.origin,
    });

    const expected: [string, FakeUpstream][] = [
      ['app.example.test', a],
      ['APP.Example.TEST.:8443', a],
      [domainToASCII('ünï.example.test'), a],
      ['x.example.test', b],
      ['a.b.example.test', b],
      ['deep.example.test', b],
      ['x.deep.example.test', c],
      ['a.b.deep.example.test', c],
      ['example.test', d],
      ['unrelated.test', d],
      ['[0:0::1]:8080', v6],
    ];
    for (const [host, up] of expected) {
      assert.equal(proxy.resolveUpstream(host), up.origin, `resolveUpstream(${host})`);
      const reply = await send(front.port, { host, path: '/p?q=1' });
      assert.equal(reply.status, 200, host);
      const echo = json(reply.body);
      assert.equal(echo.name, up === a ? 'a' : up === b ? 'b' : up === c ? 'c' : up === d ? 'd' : 'v6', host);
      assert.equal(echo.headers.host, host, 'original Host is forwarded');
      assert.equal(echo.url, '/p?q=1');
    }
  });

  it('answers 502 with a body and a log line when no route matches and there is no default', T, async (t) => {
    const a = await upstream(t, echoHandler('a'));
    const logs = captureLogs();
    const { front } = await proxied(t, { routes: [{ hosts: ['app.example.test'], upstream: a.origin }], logger: logs.logger });
    const reply = await send(front.port, { host: 'nowhere.test' });
    assert.equal(reply.status, 502);
    assert.match(reply.body.toString(), /no upstream for host nowhere\.test/);
    await waitFor(() => logs.lines.some((l) => l.msg === 'access'), 2000, 'access log');
    const warn = logs.lines.find((l) => l.msg === 'no upstream for host');
    assert.ok(warn, 'warn line');
    assert.equal(warn.level, 'warn');
    assert.equal(warn.host, 'nowhere.test');
    const access = logs.lines.find((l) => l.msg === 'access')!;
    assert.equal(access.status, 502);
    assert.equal(access.upstream, null);
  });

  it('forwards Host and X-Forwarded-*, strips hop-by-hop headers both ways, keeps Set-Cookie and status text', T, async (t) => {
    let seen: IncomingMessage | undefined;
    let seenBody = '';
    const up = await upstream(t, (req, res) => {
      seen = req;
      seenBody = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (seenBody += c));
      req.on('end', () => {
        res.writeHead(418, 'Teapot Time', [
          'Set-Cookie', 'a=1; Path=/',
          'Set-Cookie', 'b=2; Path=/',
          'Connection', 'keep-alive, X-Up-Hop',
          'X-Up-Hop', 'secret',
          'Keep-Alive', 'timeout=99',
          'Proxy-Authenticate', 'Basic realm="x"',
          'X-End', 'yes',
          'Content-Length', '5',
        ]);
        res.end('teapo');
      });
    });
    const logs = captureLogs();
    const { front } = await proxied(t, { routes: [{ hosts: ['app.example.test'], upstream: up.origin }], logger: logs.logger });

    const reply = await send(front.port, {
      host: 'app.example.test',
      path: '/hdr?token=secret',
      headers: {
        'x-forwarded-for': '203.0.113.9',
        'x-forwarded-proto': 'spoofed',
        'x-forwarded-host': 'spoofed.test',
        connection: 'keep-alive, X-Drop-Me',
        'x-drop-me': '1',
        'keep-alive': 'timeout=5',
        'proxy-authorization': 'Basic Zm9vOmJhcg==',
        'proxy-connection': 'keep-alive',
        te: 'trailers',
        trailer: 'x-foo', // Node's client only allows Trailer on a chunked body
        'transfer-encoding': 'chunked',
        'x-keep': 'kept',
      },
      method: 'POST',
      body: 'abc',
    });
    assert.ok(seen);
    const h = seen.headers;
    assert.equal(h.host, 'app.example.test');
    // 127.0.0.1 is not in proxy.trustedProxies (none by default): what it wrote is replaced.
    assert.equal(h['x-forwarded-for'], '127.0.0.1');
    assert.equal(h['x-forwarded-proto'], 'http');
    assert.equal(h['x-forwarded-host'], 'app.example.test');
    assert.equal(h['x-keep'], 'kept');
    assert.equal(seenBody, 'abc');
    for (const name of ['x-drop-me', 'keep-alive', 'proxy-authorization', 'proxy-connection', 'te', 'trailer', 'upgrade']) {
      assert.equal(h[name], undefined, `${name} must not reach the upstream`);
    }
    assert.doesNotMatch(String(h.connection), /x-drop-me/i);

    assert.equal(reply.status, 418);
    assert.equal(reply.statusMessage, 'Teapot Time');
    assert.equal(reply.body.toString(), 'teapo');
    assert.deepEqual(reply.headers['set-cookie'], ['a=1; Path=/', 'b=2; Path=/']);
    assert.equal(reply.headers['x-end'], 'yes');
    assert.equal(reply.headers['x-up-hop'], undefined);
    assert.equal(reply.headers['proxy-authenticate'], undefined);
    assert.notEqual(reply.headers['keep-alive'], 'timeout=99', "the upstream's Keep-Alive must not leak");
    assert.doesNotMatch(String(reply.headers.connection), /x-up-hop/i);

    // Without a prior X-Forwarded-For the client address alone is sent.
    await send(front.port, { host: 'app.example.test' });
    assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1');

    await waitFor(() => logs.lines.filter((l) => l.msg === 'access').length === 2, 2000, 'access logs');
    const access = logs.lines.find((l) => l.msg === 'access')!;
    assert.equal(access.host, 'app.example.test');
    assert.equal(access.client, '127.0.0.1');
    assert.equal(access.method, 'POST');
    assert.equal(access.path, '/hdr', 'query strings stay out of the log');
    assert.equal(access.status, 418);
    assert.equal(access.upstream, up.origin);
    assert.equal(access.bytes, 5);
    assert.equal(typeof access.ms, 'number');
  });

  it('https front: X-Forwarded-Proto is https; https upstreams and wss tunnels work', T, async (t) => {
    const plain = await upstream(t, echoHandler('plain'));
    const secure = await upstream(t, echoHandler('secure'), { tls: cert, onUpgrade: webSocketEcho('tls:') });
    const { front } = await proxied(
      t,
      {
        routes: [
          { hosts: ['app.example.test'], upstream: plain.origin },
          { hosts: ['secure.example.test', 'other.example.test'], upstream: secure.origin },
        ],
        upstreamTls: { ca: cert.cert },
      },
      cert,
    );
    const upstreamSni: (string | false | null)[] = [];
    secure.server.on('secureConnection', (s: import('node:tls').TLSSocket) => upstreamSni.push(s.servername));
    const r1 = await send(front.port, { host: 'app.example.test', tls: { ca: cert.cert, servername: 'app.example.test' } });
    assert.equal(r1.status, 200);
    const e1 = json(r1.body);
    assert.equal(e1.name, 'plain');
    assert.equal(e1.headers['x-forwarded-proto'], 'https');
    assert.equal(e1.headers['x-forwarded-host'], 'app.example.test');

    const r2 = await send(front.port, { host: 'secure.example.test', tls: { ca: cert.cert, servername: 'secure.example.test' } });
    assert.equal(r2.status, 200);
    const e2 = json(r2.body);
    assert.equal(e2.name, 'secure');
    assert.equal(e2.headers['x-forwarded-proto'], 'https');
    assert.equal(e2.headers.host, 'secure.example.test');

    // Requests for other hosts reuse the same upstream TLS connection (SNI does not follow Host),
    // and an IP-literal upstream gets no SNI at all.
    for (const host of ['other.example.test', 'secure.example.test', 'other.example.test']) {
      const r = await send(front.port, { host, tls: { ca: cert.cert, servername: host } });
      assert.equal(json(r.body).headers.host, host);
    }
    assert.equal(secure.connections, 1);
    assert.deepEqual(upstreamSni, [false]);

    // WebSocket over TLS on both legs, spoken by hand.
    const socket = tlsConnect({ host: '127.0.0.1', port: front.port, ca: cert.cert, servername: 'secure.example.test' });
    t.after(() => socket.destroy());
    await once(socket, 'secureConnect');
    const frames = await webSocketRoundTrip(socket, 'secure.example.test', 'hi');
    assert.equal(frames, 'tls:hi');
    assert.equal(secure.upgrades[0]?.headers['x-forwarded-proto'], 'https');
  });

  it('streams a 5 MB upload and a 5 MB download intact', T, async (t) => {
    const payload = randomBytes(5 * 1024 * 1024);
    const payloadHash = createHash('sha256').update(payload).digest('hex');
    const up = await upstream(t, (req, res) => {
      if (req.url === '/upload') {
        const hash = createHash('sha256');
        let length = 0;
        req.on('data', (c: Buffer) => {
          hash.update(c);
          length += c.length;
        });
        req.on('end', () => {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ sha256: hash.digest('hex'), length }));
        });
        return;
      }
      // Download: write with back-pressure, chunked (no content-length) or with a length.
      if (req.url === '/download-length') res.writeHead(200, { 'content-length': payload.length });
      else res.writeHead(200);
      let off = 0;
      const pump = (): void => {
        while (off < payload.length) {
          const chunk = payload.subarray(off, off + 64 * 1024);
          off += chunk.length;
          if (!res.write(chunk)) {
            res.once('drain', pump);
            return;
          }
        }
        res.end();
      };
      pump();
    });
    const { front } = await proxied(t, { upstream: up.origin });

    // Chunked upload, written piecewise with back-pressure.
    const chunkedUpload = await new Promise<{ sha256: string; length: number }>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port: front.port, method: 'POST', path: '/upload', agent: false });
      req.on('error', reject);
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve(JSON.parse(Buffer.concat(chunks).toString()) as { sha256: string; length: number }));
      });
      let off = 0;
      const pump = (): void => {
        while (off < payload.length) {
          const chunk = payload.subarray(off, off + 100_000);
          off += chunk.length;
          if (!req.write(chunk)) {
            req.once('drain', pump);
            return;
          }
        }
        req.end();
      };
      pump();
    });
    assert.deepEqual(chunkedUpload, { sha256: payloadHash, length: payload.length });

    // Upload with Content-Length.
    const lengthUpload = await send(front.port, { method: 'PUT', path: '/upload', body: payload });
    assert.deepEqual(JSON.parse(lengthUpload.body.toString()), { sha256: payloadHash, length: payload.length });

    for (const path of ['/download', '/download-length']) {
      const down = await send(front.port, { path });
      assert.equal(down.status, 200);
      assert.equal(down.body.length, payload.length, path);
      assert.equal(createHash('sha256').update(down.body).digest('hex'), payloadHash, path);
    }
  });

  it('streams both ways without waiting for whole bodies', T, async (t) => {
    let releaseDownload!: () => void;
    const downloadGate = new Promise<void>((r) => (releaseDownload = r));
    const up = await upstream(t, (req, res) => {
      if (req.url === '/download') {
        res.writeHead(200);
        res.write('first;');
        downloadGate.then(() => res.end('second'));
        return;
      }
      // Upload: answer as soon as the first chunk is in, finish when the body ends.
      let body = '';
      req.setEncoding('utf8');
      req.once('data', () => {
        res.writeHead(200);
        res.write('got-first;');
      });
      req.on('data', (c: string) => (body += c));
      req.on('end', () => res.end(`body=${body}`));
    });
    const { front } = await proxied(t, { upstream: up.origin });

    // Download: the client sees 'first;' before the upstream has finished (it waits for us).
    const download = await new Promise<string>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port: front.port, path: '/download', agent: false }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          text += c;
          if (text === 'first;') releaseDownload();
        });
        res.on('end', () => resolve(text));
      });
      req.on('error', reject);
      req.end();
    });
    assert.equal(download, 'first;second');

    // Upload: the client only sends the rest after the upstream acknowledged the first part.
    const upload = await new Promise<string>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port: front.port, method: 'POST', path: '/upload', agent: false });
      req.on('error', reject);
      req.on('response', (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          text += c;
          if (text === 'got-first;') req.end('pong');
        });
        res.on('end', () => resolve(text));
      });
      req.write('ping;');
    });
    assert.equal(upload, 'got-first;body=ping;pong');
  });

  it('respects back-pressure: a stalled reader stops the writer on the far side', T, async (t) => {
    const block = Buffer.alloc(1024 * 1024, 7);
    const LIMIT = 256 * 1024 * 1024; // far more than socket buffers can hold
    let downloadWritten = 0;
    let uploadStalled!: () => void;
    const uploadStall = new Promise<void>((r) => (uploadStalled = r));
    const up = await upstream(t, (req, res) => {
      if (req.url === '/download') {
        res.writeHead(200);
        const pump = (): void => {
          while (downloadWritten < LIMIT) {
            downloadWritten += block.length;
            if (!res.write(block)) {
              res.once('drain', pump);
              return;
            }
          }
          res.end();
        };
        pump();
        return;
      }
      // Upload: never read the body.
      req.pause();
      uploadStall.then(() => res.end('done'));
    });
    const { front } = await proxied(t, { upstream: up.origin });

    // Download with a client that never reads after the headers.
    const client = netConnect({ host: '127.0.0.1', port: front.port });
    t.after(() => client.destroy());
    client.write('GET /download HTTP/1.1\r\nHost: x.test\r\n\r\n');
    client.pause();
    await waitFor(() => downloadWritten > 0, 3000, 'download start');
    await settle(() => downloadWritten);
    assert.ok(downloadWritten < 64 * 1024 * 1024, `upstream wrote ${downloadWritten >> 20} MB into a stalled client`);
    client.destroy();

    // Upload into an upstream that never reads.
    let uploadWritten = 0;
    const req = httpRequest({ host: '127.0.0.1', port: front.port, method: 'POST', path: '/upload', agent: false });
    req.on('error', () => {});
    t.after(() => req.destroy());
    const pump = (): void => {
      while (uploadWritten < LIMIT) {
        uploadWritten += block.length;
        if (!req.write(block)) {
          req.once('drain', pump);
          return;
        }
      }
    };
    pump();
    await settle(() => uploadWritten);
    assert.ok(uploadWritten < 64 * 1024 * 1024, `client pushed ${uploadWritten >> 20} MB into a stalled upstream`);
    uploadStalled();
    req.destroy();
  });

  it('client abort mid-upload is logged as such and aborts the upstream request', T, async (t) => {
    let upstreamAborted!: () => void;
    const aborted = new Promise<void>((r) => (upstreamAborted = r));
    let received = 0;
    const up = await upstream(t, (req) => {
      req.on('data', (c: Buffer) => (received += c.length));
      req.on('close', () => upstreamAborted());
    });
    const logs = captureLogs();
    const { front } = await proxied(t, { upstream: up.origin, logger: logs.logger });
    const req = httpRequest({ host: '127.0.0.1', port: front.port, method: 'POST', path: '/up', agent: false });
    req.on('error', () => {});
    req.write(Buffer.alloc(10_000));
    await waitFor(() => received >= 10_000, 3000, 'first part upstream');
    req.destroy();
    await aborted;
    await waitFor(() => logs.lines.some((l) => l.msg === 'access'), 2000, 'access log');
    assert.equal(logs.lines.find((l) => l.msg === 'access')!.aborted, true);
    assert.ok(!logs.lines.some((l) => l.level === 'warn' || l.level === 'error'), JSON.stringify(logs.lines));
  });

  it('passes HEAD, 204 and 304 answers through without bodies', T, async (t) => {
    const up = await upstream(t, (req, res) => {
      if (req.url === '/204') res.writeHead(204, { 'x-kind': 'none' }).end();
      else if (req.url === '/304') res.writeHead(304, { etag: '"v1"' }).end();
      else res.writeHead(200, { 'content-length': '11', 'content-type': 'text/plain' }).end(req.method === 'HEAD' ? undefined : 'hello world');
    });
    const { front } = await proxied(t, { upstream: up.origin });
    const head = await send(front.port, { method: 'HEAD', path: '/' });
    assert.equal(head.status, 200);
    assert.equal(head.headers['content-length'], '11');
    assert.equal(head.body.length, 0);
    const none = await send(front.port, { path: '/204' });
    assert.equal(none.status, 204);
    assert.equal(none.headers['x-kind'], 'none');
    const notModified = await send(front.port, { path: '/304', headers: { 'if-none-match': '"v1"' } });
    assert.equal(notModified.status, 304);
    assert.equal(notModified.headers.etag, '"v1"');
    const get = await send(front.port, { path: '/' });
    assert.equal(get.body.toString(), 'hello world');
  });

  it('aborts the upstream request when the client goes away', T, async (t) => {
    let upstreamClosed!: () => void;
    const closed = new Promise<void>((r) => (upstreamClosed = r));
    const up = await upstream(t, (_req, res: ServerResponse) => {
      res.writeHead(200);
      res.write('partial');
      res.on('close', () => upstreamClosed());
    });
    const logs = captureLogs();
    const { front } = await proxied(t, { upstream: up.origin, logger: logs.logger });
    await new Promise<void>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port: front.port, path: '/hang', agent: false }, (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', () => {});
      req.on('close', () => resolve());
      setTimeout(() => reject(new Error('no response')), 5000).unref();
      req.end();
    });
    await closed;
    await waitFor(() => logs.lines.some((l) => l.msg === 'access'), 2000, 'access log');
    const access = logs.lines.find((l) => l.msg === 'access')!;
    assert.equal(access.aborted, true);
    assert.equal(access.status, 200);
    assert.ok(!logs.lines.some((l) => l.level === 'warn' || l.level === 'error'), 'a client abort is not an upstream error');
  });

  it('relays a WebSocket echo (global WebSocket client) with forwarded headers', T, async (t) => {
    const up = await upstream(t, echoHandler('http'), { onUpgrade: webSocketEcho('echo:') });
    const logs = captureLogs();
    const { front } = await proxied(t, { routes: [{ hosts: ['127.0.0.1'], upstream: up.origin }], logger: logs.logger });

    const ws = new WebSocket(`ws://127.0.0.1:${front.port}/chat?room=1`);
    t.after(() => ws.close());
    const reply = await new Promise<string>((resolve, reject) => {
      ws.addEventListener('open', () => ws.send('hello'));
      ws.addEventListener('message', (ev) => resolve(String(ev.data)));
      ws.addEventListener('error', () => reject(new Error('websocket error')));
      setTimeout(() => reject(new Error('websocket timed out')), 5000).unref();
    });
    assert.equal(reply, 'echo:hello');
    const closed = new Promise<number>((resolve) => ws.addEventListener('close', (ev) => resolve(ev.code)));
    ws.close(1000);
    assert.equal(await closed, 1000);

    const head = up.upgrades[0];
    assert.ok(head);
    assert.equal(head.url, '/chat?room=1');
    assert.equal(head.headers.host, `127.0.0.1:${front.port}`);
    assert.equal(head.headers.upgrade?.toLowerCase(), 'websocket');
    assert.match(String(head.headers.connection), /upgrade/i);
    assert.ok(head.headers['sec-websocket-key']);
    assert.ok(head.headers['sec-websocket-version']);
    assert.equal(head.headers['x-forwarded-for'], '127.0.0.1');
    assert.equal(head.headers['x-forwarded-proto'], 'http');
    assert.equal(head.headers['x-forwarded-host'], `127.0.0.1:${front.port}`);

    await waitFor(() => logs.lines.some((l) => l.msg === 'access'), 3000, 'tunnel access log');
    const access = logs.lines.find((l) => l.msg === 'access')!;
    assert.equal(access.status, 101);
    assert.equal(access.upgrade, 'websocket');
  });

  it('upgrade: bytes sent with the handshake (head) arrive; a dead upstream answers 502', T, async (t) => {
    const up = await upstream(t, echoHandler('http'), { onUpgrade: webSocketEcho('echo:') });
    const deadPort = await freePort();
    const { front } = await proxied(t, {
      routes: [
        { hosts: ['ws.example.test'], upstream: up.origin },
        { hosts: ['dead.example.test'], upstream: `http://127.0.0.1:${deadPort}` },
      ],
    });
    const socket = netConnect({ host: '127.0.0.1', port: front.port });
    t.after(() => socket.destroy());
    await once(socket, 'connect');
    // Handshake and first frame in one write: the proxy gets the frame as `head`.
    assert.equal(await webSocketRoundTrip(socket, 'ws.example.test', 'early', true), 'echo:early');

    const dead = netConnect({ host: '127.0.0.1', port: front.port });
    t.after(() => dead.destroy());
    await once(dead, 'connect');
    dead.write(handshake('dead.example.test'));
    const answer = await readAll(dead);
    assert.match(answer, /^HTTP\/1\.1 502 Bad Gateway\r\n/);
    assert.match(answer, /\r\n\r\n502 Bad Gateway: upstream refused the connection\n$/);
    assert.ok(!answer.includes('127.0.0.1') && !answer.includes(String(deadPort)), `the answer names the upstream: ${answer}`);
  });

  it('answers 502 when the upstream refuses, 504 when it never answers, and cuts a broken body', T, async (t) => {
    const deadPort = await freePort();
    const silent = await upstream(t, () => {
      /* never answers */
    });
    const broken = await upstream(t, (_req, res) => {
      res.writeHead(200, { 'content-length': '100' });
      res.write('only part');
      setTimeout(() => res.socket?.destroy(), 20);
    });
    const logs = captureLogs();
    const { front } = await proxied(t, {
      routes: [
        { hosts: ['dead.example.test'], upstream: `http://127.0.0.1:${deadPort}` },
        { hosts: ['silent.example.test'], upstream: silent.origin },
        { hosts: ['broken.example.test'], upstream: broken.origin },
      ],
      upstreamTimeout: 300,
      logger: logs.logger,
    });

    const refused = await send(front.port, { host: 'dead.example.test' });
    assert.equal(refused.status, 502);
    // The body never names the upstream's address; the log line does.
    assert.equal(refused.body.toString(), '502 Bad Gateway: upstream refused the connection\n');
    const refusedLog = logs.lines.find((l) => l.code === 'ECONNREFUSED');
    assert.ok(refusedLog, 'log line for the refused connection');
    assert.equal(refusedLog.level, 'warn');
    assert.equal(refusedLog.host, 'dead.example.test');
    assert.equal(refusedLog.upstream, `http://127.0.0.1:${deadPort}`);

    const started = Date.now();
    const timedOut = await send(front.port, { host: 'silent.example.test' });
    const elapsed = Date.now() - started;
    assert.equal(timedOut.status, 504);
    assert.equal(timedOut.body.toString(), '504 Gateway Timeout: upstream did not answer within 300 ms\n');
    // At the 300 ms time-out, not the 60 s default; the upper bound leaves a loaded machine room.
    assert.ok(elapsed >= 250 && elapsed < 15_000, `504 after ${elapsed} ms`);
    assert.ok(logs.lines.some((l) => l.code === 'UND_ERR_HEADERS_TIMEOUT' && l.level === 'warn'));

    // Headers already sent: the client sees a truncated response, not a 502.
    await assert.rejects(send(front.port, { host: 'broken.example.test' }), /aborted|ECONNRESET|socket hang up/);
  });

  it('reuses keep-alive connections to the upstream', T, async (t) => {
    const up = await upstream(t, echoHandler('a'));
    const { front } = await proxied(t, { upstream: up.origin, maxConnectionsPerUpstream: 4 });
    for (let i = 0; i < 40; i++) {
      const reply = await send(front.port, { path: `/n/${i}` });
      assert.equal(reply.status, 200);
    }
    assert.ok(up.connections <= 2, `40 sequential requests used ${up.connections} upstream connections`);

    // A burst is capped by maxConnectionsPerUpstream.
    const agent = new Agent({ keepAlive: true, maxSockets: 20 });
    t.after(() => agent.destroy());
    const before = up.connections;
    const replies = await Promise.all(Array.from({ length: 20 }, (_, i) => send(front.port, { path: `/burst/${i}`, agent })));
    assert.ok(replies.every((r) => r.status === 200));
    assert.ok(up.connections - before <= 4, `burst opened ${up.connections - before} connections`);
  });

  it('setRoutes takes effect immediately and rejects bad routes atomically', T, async (t) => {
    const a = await upstream(t, echoHandler('a'));
    const b = await upstream(t, echoHandler('b'));
    const { proxy, front } = await proxied(t, { routes: [{ hosts: ['app.example.test'], upstream: a.origin }] });
    const agent = new Agent({ keepAlive: true });
    t.after(() => agent.destroy());

    assert.equal(json((await send(front.port, { host: 'app.example.test', agent })).body).name, 'a');
    proxy.setRoutes([{ hosts: ['app.example.test'], upstream: b.origin }]);
    assert.equal(proxy.resolveUpstream('app.example.test'), b.origin);
    assert.equal(json((await send(front.port, { host: 'app.example.test', agent })).body).name, 'b');

    assert.equal((await send(front.port, { host: 'new.example.test', agent })).status, 502);
    proxy.setRoutes([{ hosts: ['*.example.test'], upstream: a.origin }], b.origin);
    assert.equal(json((await send(front.port, { host: 'new.example.test', agent })).body).name, 'a');
    assert.equal(json((await send(front.port, { host: 'other.test', agent })).body).name, 'b');

    assert.throws(() => proxy.setRoutes([{ hosts: ['ok.test'], upstream: 'ftp://127.0.0.1:21' }]), /scheme/);
    assert.throws(() => proxy.setRoutes([{ hosts: ['*.*.test'], upstream: a.origin }]), /invalid host pattern/);
    assert.throws(() => proxy.setRoutes([{ hosts: ['ok.test'], upstream: `${a.origin}/prefix` }]), /without path/);
    assert.equal(proxy.resolveUpstream('x.example.test'), a.origin, 'failed setRoutes keeps the previous table');
  });

  it('answers 503 after close()', T, async (t) => {
    const a = await upstream(t, echoHandler('a'));
    const { proxy, front } = await proxied(t, { upstream: a.origin });
    assert.equal((await send(front.port)).status, 200);
    await proxy.close();
    assert.equal((await send(front.port)).status, 503);
  });
});

/** Wait until `value()` stops growing for 300 ms (the writer is blocked on back-pressure). */
async function settle(value: () => number): Promise<void> {
  let last = -1;
  const deadline = Date.now() + 8000;
  while (value() !== last) {
    if (Date.now() > deadline) throw new Error(`writer never blocked (${value() >> 20} MB written)`);
    last = value();
    await new Promise((r) => setTimeout(r, 300));
  }
}
