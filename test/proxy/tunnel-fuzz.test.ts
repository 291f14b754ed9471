// Property-based tests (fast-check, fixed seed, bounded runs) of the upgrade path: whatever a
// client sends after an upgrade request, however it is split into TCP writes, an upstream that
// does not switch protocols receives at most the one rewritten request head, and the proxy keeps
// serving. A failure prints the seed and the shrunk counterexample (fast-check's report).
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect as netConnect } from 'node:net';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { handshake, proxied, rawUpstream, send, type RawUpstream } from './helpers.ts';

const HOST = 'app.example.test';
const T = { timeout: 120_000 };

/** Send `chunks` as separate writes (a turn of the event loop apart); resolve with the answer once the proxy closes. */
async function sendInChunks(port: number, chunks: Buffer[]): Promise<Buffer> {
  const socket = netConnect({ host: '127.0.0.1', port });
  socket.on('error', () => {}); // the proxy may close while we still write: that is its right
  await once(socket, 'connect');
  const answer = new Promise<Buffer>((resolve, reject) => {
    const parts: Buffer[] = [];
    socket.on('data', (c: Buffer) => parts.push(c));
    socket.on('close', () => resolve(Buffer.concat(parts)));
    setTimeout(() => {
      socket.destroy();
      reject(new Error('the proxy did not close the connection within 20 s'));
    }, 20_000).unref();
  });
  for (const chunk of chunks) {
    if (socket.destroyed || !socket.writable) break;
    socket.write(chunk);
    await new Promise((r) => setImmediate(r));
  }
  // Half-close: a client that sent everything; the proxy still owes it an answer.
  if (!socket.destroyed && socket.writable) socket.end();
  return answer;
}

/** Split `bytes` at the given positions (taken modulo its length). */
function split(bytes: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let from = 0;
  for (const point of points) {
    if (point > from) out.push(bytes.subarray(from, point));
    from = Math.max(from, point);
  }
  if (from < bytes.length) out.push(bytes.subarray(from));
  return out;
}

/** What the upstream received on the connections it accepted since `before`. */
function receivedSince(up: RawUpstream, before: number): Buffer[] {
  return up.received.slice(before);
}

/**
 * At most one request line in all the bytes; on a tunnel (the head says `connection: Upgrade`)
 * nothing after the request head. (A request Node does not take for an upgrade, e.g. with an
 * empty Upgrade value, is proxied as a plain request and may carry its body.)
 */
function assertOneHeadAtMost(bytes: Buffer[]): void {
  const lines = bytes.flatMap((b) => b.toString('latin1').match(/^[!-~]+ [^ \r\n]+ HTTP\/1\.[01]\r?$/gm) ?? []);
  assert.ok(lines.length <= 1, `the upstream saw ${lines.length} requests: ${JSON.stringify(lines)}`);
  for (const b of bytes) {
    const end = b.indexOf('\r\n\r\n');
    if (end === -1) {
      assert.equal(b.length, 0, `an incomplete request head reached the upstream: ${JSON.stringify(b.toString('latin1'))}`);
      continue;
    }
    if (!b.toString('latin1', 0, end).includes('\r\nconnection: Upgrade\r\n')) continue;
    assert.equal(b.length, end + 4, `bytes after the request head reached the upstream: ${JSON.stringify(b.toString('latin1'))}`);
  }
}

const token = fc.stringMatching(/^[a-z0-9]{1,8}$/);

/** A plausible HTTP/1.1 request: what a smuggler would append. */
const httpRequest = fc
  .record({
    method: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'OPTIONS'),
    path: token.map((p) => `/${p}`),
    host: fc.constantFrom(HOST, 'internal.example', '127.0.0.1', 'localhost'),
    body: fc.option(fc.string({ maxLength: 40 }), { nil: undefined }),
    chunked: fc.boolean(),
    upgrade: fc.boolean(),
  })
  .map(({ method, path, host, body, chunked, upgrade }) => {
    let head = `${method} ${path} HTTP/1.1\r\nHost: ${host}\r\nX-Forwarded-For: 10.0.0.1\r\n`;
    if (upgrade) head += 'Connection: Upgrade\r\nUpgrade: websocket\r\n';
    if (body === undefined) return Buffer.from(head + '\r\n', 'latin1');
    const data = Buffer.from(body, 'utf8');
    if (chunked) return Buffer.concat([Buffer.from(`${head}Transfer-Encoding: chunked\r\n\r\n${data.length.toString(16)}\r\n`), data, Buffer.from('\r\n0\r\n\r\n')]);
    return Buffer.concat([Buffer.from(`${head}Content-Length: ${data.length}\r\n\r\n`), data]);
  });

/** Whatever may follow an upgrade request: requests, raw bytes, CRLFs. */
const tail = fc.array(
  fc.oneof(
    { weight: 3, arbitrary: httpRequest },
    { weight: 2, arbitrary: fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a)) },
    { weight: 1, arbitrary: fc.constantFrom('\r\n', '\r\n\r\n', '0\r\n\r\n', 'HTTP/1.1 200 OK\r\n').map((s) => Buffer.from(s)) },
  ),
  { minLength: 1, maxLength: 5 },
);

const cuts = fc.array(fc.nat({ max: 2000 }), { maxLength: 8 });

describe('upgrade path fuzzing', () => {
  it('random bytes and requests after an upgrade request, split at random points: the upstream sees one request at most', T, async (t) => {
    const up = await rawUpstream(t);
    const { front } = await proxied(t, { upstream: up.origin });
    await fc.assert(
      fc.asyncProperty(tail, cuts, async (parts, positions) => {
        const before = up.received.length;
        const bytes = Buffer.concat([Buffer.from(handshake(HOST)), ...parts]);
        const answer = await sendInChunks(front.port, split(bytes, positions));
        await up.idle();
        assertOneHeadAtMost(receivedSince(up, before));
        // The one answer is the upstream's, marked as the last on the connection.
        assert.match(answer.toString('latin1'), /^HTTP\/1\.1 200 OK\r\n[\s\S]*Connection: close\r\n\r\nplain$/);
      }),
      { seed: 42, numRuns: 300 },
    );
    assert.equal((await send(front.port, { host: HOST })).status, 200, 'the proxy still serves');
  });

  it('random header values on the upgrade request: one request at most, byte-exact header values, the proxy keeps serving', T, async (t) => {
    const up = await rawUpstream(t);
    // A plain request left unanswered (the upstream answers once per connection) ends in 504 soon.
    const { front } = await proxied(t, { upstream: up.origin, upstreamTimeout: 2000 });
    // Field-value bytes: mostly visible ASCII and obs-text, sometimes controls a parser must refuse.
    const valueByte = fc.oneof(
      { weight: 6, arbitrary: fc.integer({ min: 0x20, max: 0x7e }) },
      { weight: 2, arbitrary: fc.integer({ min: 0x80, max: 0xff }) },
      { weight: 1, arbitrary: fc.constantFrom(0x09, 0x00, 0x0d, 0x0a, 0x7f, 0x0b) },
    );
    const value = fc.array(valueByte, { maxLength: 40 }).map((bytes) => Buffer.from(bytes).toString('latin1'));
    // Not blank: Node takes a request with a blank Upgrade for a plain one (the plain path).
    const upgradeValue = fc.oneof(fc.constantFrom('websocket', 'WebSocket', 'websocket, h2c', 'h2c', 'H2C/1', 'foo/2, bar'), value).filter((v) => v.replace(/[ \t]/g, '') !== '');
    const extra = fc.constantFrom('', 'Content-Length: 0\r\n', 'Content-Length: 5\r\n', 'Transfer-Encoding: chunked\r\n', 'Expect: 100-continue\r\n');
    const after = fc.constantFrom('', 'hello', 'GET /smuggled HTTP/1.1\r\nHost: internal.example\r\n\r\n');
    await fc.assert(
      fc.asyncProperty(value, upgradeValue, extra, after, cuts, async (fuzz, upgrade, extraHeader, trailing, positions) => {
        const before = up.received.length;
        const request =
          `GET /ws HTTP/1.1\r\nHost: ${HOST}\r\nConnection: Upgrade\r\nUpgrade: ${upgrade}\r\nX-Fuzz: ${fuzz}\r\n${extraHeader}` +
          'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n' + trailing;
        const answer = (await sendInChunks(front.port, split(Buffer.from(request, 'latin1'), positions))).toString('latin1');
        await up.idle();
        const received = receivedSince(up, before);
        assertOneHeadAtMost(received);
        assert.match(answer, /^HTTP\/1\.1 \d{3} /, 'the client gets an answer');
        const head = received.find((b) => b.length > 0)?.toString('latin1');
        if (head !== undefined) {
          // Node trims optional whitespace around a value; the rest arrives byte for byte.
          assert.ok(head.includes(`\r\nX-Fuzz: ${fuzz.replace(/^[ \t]+|[ \t]+$/g, '')}\r\n`), `X-Fuzz changed on the way: ${JSON.stringify(head)}`);
        }
      }),
      { seed: 42, numRuns: 300 },
    );
    assert.equal((await send(front.port, { host: HOST })).status, 200, 'the proxy still serves');
  });
});
