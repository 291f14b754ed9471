// Issue 16 item 3 acceptance: HTTP/2 to clients through the real gateway (Pebble-issued
// certificates, a real HTTP/1.1 upstream): curl --http2 and node's http2 client get h2, the
// upstream sees Host and X-Forwarded-*, h2load completes without errors, `tls.alpn: ["http/1.1"]`
// offers no h2, and a rapid-reset client gets GOAWAY while a normal client goes on working.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { connect as h2connect, constants, type ClientHttp2Session, type OutgoingHttpHeaders } from 'node:http2';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { capturingLogger, type LogLine } from '../support/log-lines.ts';
import { startPebbleOnFreePorts, type PebbleOnFreePorts } from '../support/pebble.ts';
import { echoHandler, startUpstream, type FakeUpstream } from '../support/upstream.ts';

function run(cmd: string, args: string[], timeoutMs = 120_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** curl over HTTP/2 (when offered) to 127.0.0.1 for `name`; the body and the HTTP version curl used. */
async function curlH2(name: string, port: number, caFile: string, extra: string[] = []): Promise<{ status: number; version: string; body: string }> {
  const args = ['-sS', '--http2', '--max-time', '60', '--resolve', `${name}:${port}:127.0.0.1`, '--cacert', caFile, '-w', '\n%{http_code} %{http_version}', ...extra, `https://${name}:${port}/h2/path?q=1`];
  const r = await run('curl', args);
  assert.equal(r.code, 0, `curl ${args.join(' ')}: ${r.stderr}`);
  const i = r.stdout.lastIndexOf('\n');
  const [status, version] = r.stdout.slice(i + 1).split(' ');
  return { status: Number(status), version: version!, body: r.stdout.slice(0, i) };
}

/** One request on an h2 session; status, headers and body. */
function h2Request(session: ClientHttp2Session, headers: OutgoingHttpHeaders, body?: string): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const stream = session.request(headers, body === undefined ? { endStream: true } : {});
    let responseHeaders: Record<string, unknown> = {};
    let text = '';
    stream.setEncoding('utf8');
    stream.on('response', (h) => (responseHeaders = { ...h }));
    stream.on('data', (c: string) => (text += c));
    stream.on('end', () => resolve({ status: Number(responseHeaders[':status']), headers: responseHeaders, body: text }));
    stream.on('error', reject);
    if (body !== undefined) stream.end(body);
  });
}

function connectH2(port: number, name: string, ca: string): Promise<ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const session = h2connect(`https://${name}:${port}`, { ca, servername: name, host: '127.0.0.1', port } as never);
    session.once('connect', () => resolve(session));
    session.once('error', reject);
  });
}

describe('HTTP/2 to clients', () => {
  let p: PebbleOnFreePorts;
  let gw: TestGateway;
  let upstream: FakeUpstream;
  let caFile: string;
  let lines: LogLine[];

  before(async () => {
    p = await startPebbleOnFreePorts();
    upstream = await startUpstream(echoHandler('app'));
    const captured = capturingLogger('info');
    lines = captured.lines;
    gw = await startTestGateway({
      pebble: p.pebble,
      httpsPort: p.httpsPort,
      httpPort: p.httpPort,
      logger: captured.logger,
      config: { onDemand: { allow: ['*.h2.test'] }, proxy: { upstream: upstream.origin, strictHost: true } },
    });
    caFile = join(gw.dataDir, 'pebble-root.pem');
    await writeFile(caFile, p.root);
  });

  after(async () => {
    await gw?.close();
    await upstream?.close();
    await p?.pebble.stop();
  });

  test('curl --http2 gets HTTP/2 (also for the request that triggers issuance); the upstream sees Host and X-Forwarded-*', async () => {
    const res = await curlH2('first.h2.test', p.httpsPort, caFile);
    assert.equal(res.version, '2');
    assert.equal(res.status, 200);
    const seen = JSON.parse(res.body);
    assert.equal(seen.url, '/h2/path?q=1');
    assert.equal(seen.headers.host, `first.h2.test:${p.httpsPort}`, ':authority becomes Host');
    assert.equal(seen.headers['x-forwarded-proto'], 'https');
    assert.equal(seen.headers['x-forwarded-host'], `first.h2.test:${p.httpsPort}`);
    assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1');
    assert.ok(!seen.rawHeaders.some((h: string) => h.startsWith(':')), 'no pseudo-header reaches the upstream');
    const post = await curlH2('first.h2.test', p.httpsPort, caFile, ['-H', 'content-type: text/plain', '--data-binary', 'x'.repeat(5000)]);
    assert.equal(post.version, '2');
    assert.equal(JSON.parse(post.body).bodyLength, 5000, 'an h2 request body reaches the upstream');
  });

  test('node http2 client: concurrent streams, split cookies joined, no hop-by-hop fields back, access log written', async () => {
    const session = await connectH2(p.httpsPort, 'node.h2.test', p.root);
    try {
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) => h2Request(session, { ':path': `/n/${i}`, cookie: ['a=1', 'b=2'] })),
      );
      for (const [i, r] of results.entries()) {
        assert.equal(r.status, 200);
        const seen = JSON.parse(r.body);
        assert.equal(seen.url, `/n/${i}`);
        assert.equal(seen.headers.host, `node.h2.test:${p.httpsPort}`);
        assert.equal(seen.rawHeaders.filter((h: string) => h.toLowerCase() === 'cookie').length, 1, 'one Cookie field for the HTTP/1.1 upstream');
        assert.equal(seen.headers.cookie, 'a=1; b=2');
        assert.equal(r.headers.connection, undefined);
        assert.equal(r.headers['keep-alive'], undefined);
        assert.equal(r.headers['x-upstream'], 'app');
      }
      const body = await h2Request(session, { ':path': '/upload', ':method': 'POST' }, 'hello');
      assert.equal(JSON.parse(body.body).bodyLength, 5, 'a body without content-length is streamed');
    } finally {
      session.close();
    }
    const access = lines.filter((l) => l.host === 'node.h2.test' && l.status === 200 && typeof l.path === 'string' && l.path.startsWith('/n/'));
    assert.equal(access.length, 20, 'one access log line per h2 request');
  });

  test('strictHost over h2: a stream for a name the connection\'s certificate does not cover gets 421', async () => {
    const session = await connectH2(p.httpsPort, 'strict.h2.test', p.root);
    try {
      assert.equal((await h2Request(session, { ':path': '/' })).status, 200);
      const other = await h2Request(session, { ':path': '/', ':authority': 'other.h2.test' });
      assert.equal(other.status, 421);
      assert.match(other.body, /Misdirected/);
    } finally {
      session.close();
    }
  });

  test('h2load -n 2000 -c 10 -m 10 through the gateway: 0 failed, 0 errored', async () => {
    // The certificate is issued by the first test's kind of request; make sure it exists first.
    await curlH2('load.h2.test', p.httpsPort, caFile);
    const r = await run('h2load', ['-n', '2000', '-c', '10', '-m', '10', '-t', '1', `--connect-to=127.0.0.1:${p.httpsPort}`, `https://load.h2.test:${p.httpsPort}/`]);
    const out = r.stdout + r.stderr;
    const m = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(out);
    assert.ok(m, `h2load printed no request summary:\n${out}`);
    assert.match(out, /Application protocol: h2/);
    assert.deepEqual(m.slice(1).map(Number), [2000, 2000, 2000, 2000, 0, 0, 0], out);
    assert.match(out, /status codes: 2000 2xx/);
  });

  test('rapid reset: a client cancelling streams in a loop gets GOAWAY (ENHANCE_YOUR_CALM); a normal client meanwhile works', async () => {
    const normal = await connectH2(p.httpsPort, 'calm.h2.test', p.root);
    const attacker = await connectH2(p.httpsPort, 'calm.h2.test', p.root);
    try {
      const goaway = new Promise<number>((resolve) => attacker.once('goaway', (code: number) => resolve(code)));
      attacker.on('error', () => {});
      let sent = 0;
      const normalStatuses: number[] = [];
      // 500 resets, far past the per-connection allowance (100 at once, 10/s after).
      while (sent < 500 && !attacker.destroyed && !attacker.closed) {
        for (let i = 0; i < 20 && !attacker.destroyed && !attacker.closed; i++) {
          const s = attacker.request({ ':path': '/reset' }, { endStream: true });
          s.on('error', () => {});
          s.close(constants.NGHTTP2_CANCEL);
          sent++;
        }
        normalStatuses.push((await h2Request(normal, { ':path': '/during' })).status);
      }
      const code = await Promise.race([goaway, new Promise<string>((resolve) => setTimeout(resolve, 30_000, 'no goaway'))]);
      assert.equal(code, constants.NGHTTP2_ENHANCE_YOUR_CALM, `GOAWAY after ${sent} resets`);
      assert.ok(sent < 500, `the session was closed before the client could send all its resets (${sent} sent)`);
      assert.ok(normalStatuses.length > 0 && normalStatuses.every((s) => s === 200), `the normal client got ${normalStatuses.join(',')}`);
      assert.equal((await h2Request(normal, { ':path': '/after' })).status, 200);
      assert.ok(lines.some((l) => l.step === 'h2-rapid-reset'), 'a warn line says why');
    } finally {
      normal.close();
      attacker.destroy();
    }
  });
});

describe('tls.alpn: ["http/1.1"]', () => {
  test('no h2 offered: ALPN picks http/1.1, curl --http2 falls back to HTTP/1.1', async () => {
    const p = await startPebbleOnFreePorts();
    const upstream = await startUpstream(echoHandler('app'));
    let gw: TestGateway | undefined;
    try {
      gw = await startTestGateway({
        pebble: p.pebble,
        httpsPort: p.httpsPort,
        httpPort: p.httpPort,
        config: { onDemand: { allow: ['*.h1.test'] }, proxy: { upstream: upstream.origin }, tls: { alpn: ['http/1.1'] } },
      });
      const caFile = join(gw.dataDir, 'pebble-root.pem');
      await writeFile(caFile, p.root);
      const res = await curlH2('only.h1.test', p.httpsPort, caFile);
      assert.equal(res.version, '1.1');
      assert.equal(res.status, 200);
      const alpn = await new Promise<string | false | null>((resolve, reject) => {
        const s = tlsConnect({ host: '127.0.0.1', port: p.httpsPort, servername: 'only.h1.test', ca: p.root, ALPNProtocols: ['h2', 'http/1.1'] }, () => {
          resolve(s.alpnProtocol);
          s.end();
        });
        s.on('error', reject);
      });
      assert.equal(alpn, 'http/1.1');
    } finally {
      await gw?.close();
      await upstream.close();
      await p.pebble.stop();
    }
  });
});
