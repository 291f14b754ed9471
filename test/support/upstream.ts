// Fake upstream servers for proxy tests: real node:http(s) servers on 127.0.0.1:0 that count
// connections and close everything (including upgraded sockets) on close().
import { createHash } from 'node:crypto';
import { createServer as createHttpServer, type IncomingMessage, type RequestListener, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';

export interface FakeUpstream {
  server: Server;
  port: number;
  /** 'http://127.0.0.1:<port>' or 'https://127.0.0.1:<port>'. */
  origin: string;
  /** TCP connections accepted so far. */
  readonly connections: number;
  /** Request heads seen by the 'upgrade' listener, oldest first. */
  readonly upgrades: IncomingMessage[];
  close(): Promise<void>;
}

export interface FakeUpstreamOptions {
  /** Serve https with this key pair. */
  tls?: { key: string | Buffer; cert: string | Buffer };
  /** 'upgrade' listener; see webSocketEcho(). */
  onUpgrade?: (req: IncomingMessage, socket: Duplex, head: Buffer) => void;
  /** Listen on this loopback address (default 127.0.0.1) and port (default a free one). */
  host?: string;
  port?: number;
}

export async function startUpstream(handler: RequestListener, opts: FakeUpstreamOptions = {}): Promise<FakeUpstream> {
  const server: Server = opts.tls
    ? (createHttpsServer({ key: opts.tls.key, cert: opts.tls.cert }, handler) as unknown as Server)
    : createHttpServer(handler);
  const sockets = new Set<Socket>();
  const upgrades: IncomingMessage[] = [];
  let connections = 0;
  server.on('connection', (socket: Socket) => {
    connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  if (opts.onUpgrade) {
    const onUpgrade = opts.onUpgrade;
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      upgrades.push(req);
      onUpgrade(req, socket, head);
    });
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: opts.host ?? '127.0.0.1', port: opts.port ?? 0 }, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    server,
    port,
    origin: `${opts.tls ? 'https' : 'http'}://${opts.host ?? '127.0.0.1'}:${port}`,
    get connections() {
      return connections;
    },
    upgrades,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      }),
  };
}

/** Request handler answering with JSON describing what arrived: name, method, url, headers, rawHeaders. */
export function echoHandler(name: string): RequestListener {
  return (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.stringify({
        name,
        method: req.method,
        url: req.url,
        headers: req.headers,
        rawHeaders: req.rawHeaders,
        bodyLength: Buffer.concat(chunks).length,
      });
      res.writeHead(200, { 'content-type': 'application/json', 'x-upstream': name });
      res.end(body);
    });
  };
}

const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** Encode one unmasked (server → client) frame. */
export function encodeFrame(opcode: number, payload: Buffer, mask?: Buffer): Buffer {
  const len = payload.length;
  const maskBit = mask ? 0x80 : 0;
  let header: Buffer;
  if (len < 126) {
    header = Buffer.from([0x80 | opcode, maskBit | len]);
  } else if (len < 65536) {
    header = Buffer.alloc(4);
    header[0] = 0x80 | opcode;
    header[1] = maskBit | 126;
    header.writeUInt16BE(len, 2);
  } else {
    header = Buffer.alloc(10);
    header[0] = 0x80 | opcode;
    header[1] = maskBit | 127;
    header.writeBigUInt64BE(BigInt(len), 2);
  }
  if (!mask) return Buffer.concat([header, payload]);
  const masked = Buffer.alloc(len);
  for (let i = 0; i < len; i++) masked[i] = payload[i]! ^ mask[i % 4]!;
  return Buffer.concat([header, mask, masked]);
}

export interface Frame {
  opcode: number;
  payload: Buffer;
}

/** Parse complete frames off the front of `buf`; returns them and the unconsumed rest. */
export function decodeFrames(buf: Buffer): { frames: Frame[]; rest: Buffer } {
  const frames: Frame[] = [];
  let off = 0;
  for (;;) {
    if (buf.length - off < 2) break;
    const b0 = buf[off]!;
    const b1 = buf[off + 1]!;
    let len = b1 & 0x7f;
    let pos = off + 2;
    if (len === 126) {
      if (buf.length - pos < 2) break;
      len = buf.readUInt16BE(pos);
      pos += 2;
    } else if (len === 127) {
      if (buf.length - pos < 8) break;
      len = Number(buf.readBigUInt64BE(pos));
      pos += 8;
    }
    const masked = (b1 & 0x80) !== 0;
    const mask = masked ? buf.subarray(pos, pos + 4) : null;
    if (masked) pos += 4;
    if (buf.length - pos < len) break;
    const payload = Buffer.from(buf.subarray(pos, pos + len));
    if (mask) for (let i = 0; i < len; i++) payload[i] = payload[i]! ^ mask[i % 4]!;
    frames.push({ opcode: b0 & 0x0f, payload });
    off = pos + len;
  }
  return { frames, rest: buf.subarray(off) };
}

/**
 * Minimal WebSocket echo server side for an 'upgrade' listener: completes the handshake, echoes
 * text/binary frames (with `prefix` prepended to text), answers pings and close frames.
 */
export function webSocketEcho(prefix = ''): (req: IncomingMessage, socket: Duplex, head: Buffer) => void {
  return (req, socket, head) => {
    socket.on('error', () => {});
    const key = req.headers['sec-websocket-key'];
    if (typeof key !== 'string' || (req.headers.upgrade ?? '').toLowerCase() !== 'websocket') {
      socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    const accept = createHash('sha1').update(key + WS_GUID).digest('base64');
    socket.write(
      'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        `Sec-WebSocket-Accept: ${accept}\r\n\r\n`,
    );
    let pending: Buffer = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      pending = Buffer.concat([pending, chunk]);
      const { frames, rest } = decodeFrames(pending);
      pending = rest;
      for (const frame of frames) {
        if (frame.opcode === 1) {
          socket.write(encodeFrame(1, Buffer.concat([Buffer.from(prefix), frame.payload])));
        } else if (frame.opcode === 2) {
          socket.write(encodeFrame(2, frame.payload));
        } else if (frame.opcode === 9) {
          socket.write(encodeFrame(10, frame.payload));
        } else if (frame.opcode === 8) {
          socket.end(encodeFrame(8, frame.payload));
          return;
        }
      }
    };
    socket.on('data', onData);
    if (head.length > 0) onData(head);
  };
}
