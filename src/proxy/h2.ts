// HTTP/2 from clients, on the proxy's side: what an h2 session may do, and how an h2 request
// enters the same path as an HTTP/1.1 one (ReverseProxy.handleRequest, so routes, strictHost,
// error pages, the access log and metrics are the same code).
//
//   1. session limits (h2ServerOptions): at most H2_MAX_CONCURRENT_STREAMS open streams per
//      connection (SETTINGS_MAX_CONCURRENT_STREAMS), bounded header lists, invalid frames and
//      refused streams; beyond Node's limits the session is closed by Node
//   2. rapid reset (CVE-2023-44487, guardH2Session): streams the client abandons (RST_STREAM
//      before the response finished) draw from a token bucket per connection (burst
//      H2_RESET_BURST, refilled at H2_RESET_RATE per second); empty → GOAWAY ENHANCE_YOUR_CALM
//      and the connection is closed. A sampled warn line says so
//   3. request entry (h2Request): a stream reset before its request is read is dropped (no
//      upstream request); `:authority` becomes Host (the upstream speaks HTTP/1.1),
//      split Cookie fields are joined (RFC 9113 §8.2.3); then the shared proxy path. The
//      body and hop-by-hop rules are those of headers.ts (an h2 body needs no length field)
import { constants, type Http2ServerRequest, type Http2ServerResponse, type SecureServerOptions, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../util/log.ts';
import { LogSampler } from '../util/log-sampler.ts';
import { TokenBucket } from '../util/ratelimit.ts';

/** SETTINGS_MAX_CONCURRENT_STREAMS announced to every h2 client (browsers open at most ~100). */
export const H2_MAX_CONCURRENT_STREAMS = 100;
/** Client stream resets a connection may make at once before GOAWAY (token bucket size). */
export const H2_RESET_BURST = 100;
/** Client stream resets per second a connection earns back (so ~100 per 10 s, sustained). */
export const H2_RESET_RATE = 10;

/**
 * The http2 server options of step 1, to spread into `http2.createSecureServer`. The header
 * list is bounded like HTTP/1.1's (Node's 16 KiB header limit, plus nghttp2's 32 bytes per field).
 */
export function h2ServerOptions(): Pick<SecureServerOptions, 'settings' | 'maxSessionInvalidFrames' | 'maxSessionRejectedStreams' | 'maxHeaderListPairs'> {
  return {
    settings: { maxConcurrentStreams: H2_MAX_CONCURRENT_STREAMS, maxHeaderListSize: 32 * 1024 },
    maxSessionInvalidFrames: 100,
    maxSessionRejectedStreams: 100,
    maxHeaderListPairs: 128,
  };
}

/** Shared by every session of one server: how the rapid-reset guard logs. */
export interface H2GuardContext {
  logger: Logger;
  sampler: LogSampler;
}

/** A guard context for a server; one sampler so a flood of connections costs a few lines. */
export function h2GuardContext(logger: Logger): H2GuardContext {
  return { logger, sampler: new LogSampler({ maxPerInterval: 5, intervalMs: 60_000 }) };
}

/** Step 2: attach to every new session (the server's 'session' event). */
export function guardH2Session(ctx: H2GuardContext, session: ServerHttp2Session): void {
  const resets = new TokenBucket({ rate: H2_RESET_RATE, burst: H2_RESET_BURST });
  session.on('stream', (stream: ServerHttp2Stream) => {
    stream.once('close', () => {
      // A stream whose response went out whole closed normally; any other was abandoned.
      if (stream.rstCode === constants.NGHTTP2_NO_ERROR && stream.writableFinished) return;
      if (session.destroyed || session.closed || resets.take()) return;
      const suppressed = ctx.sampler.sample();
      if (suppressed !== undefined) {
        const socket = session.socket;
        ctx.logger.warn({ step: 'h2-rapid-reset', remote: socket?.remoteAddress, sni: (socket as { servername?: string } | undefined)?.servername || undefined, suppressedSinceLastLine: suppressed }, `HTTP/2 client reset more than ${H2_RESET_BURST} streams at ${H2_RESET_RATE}/s: GOAWAY, connection closed`);
      }
      session.goaway(constants.NGHTTP2_ENHANCE_YOUR_CALM);
      session.destroy();
    });
  });
}

/** What h2Request hands an h2 request to (ReverseProxy.handleRequest). */
export type RequestHandler = (req: IncomingMessage, res: ServerResponse) => void;

/**
 * Step 3: the 'request' listener for h2 requests of the compatibility API; HTTP/1.1 requests
 * of the same server (allowHTTP1) pass through untouched.
 */
export function h2Request(handle: RequestHandler): (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse) => void {
  return (req, res) => {
    if (req.httpVersionMajor === 2) {
      const stream = (req as Http2ServerRequest).stream;
      // Reset already (rapid reset sends HEADERS and RST_STREAM together): nothing to answer,
      // and the upstream is spared the request.
      if (stream.destroyed) return;
      toHttp1Fields(req as Http2ServerRequest);
      // The proxy checks res.destroyed before answering (the stream may be reset meanwhile);
      // the compatibility response has no such field.
      Object.defineProperty(res, 'destroyed', { get: () => stream.destroyed });
    }
    handle(req as IncomingMessage, res as ServerResponse);
  };
}

function toHttp1Fields(req: Http2ServerRequest): void {
  const headers = req.headers;
  const authority = headers[':authority'];
  // RFC 9113 §8.3.1: :authority wins over a Host field the client may also have sent.
  if (typeof authority === 'string' && authority !== '') headers.host = authority;
  const raw = req.rawHeaders;
  let cookies = 0;
  for (let i = 0; i < raw.length; i += 2) if (raw[i] === 'cookie') cookies++;
  if (cookies < 2) return;
  // h2 clients may send each cookie in its own field; an HTTP/1.1 upstream expects one field.
  const joined = headers.cookie;
  for (let i = raw.length - 2; i >= 0; i -= 2) if (raw[i] === 'cookie') raw.splice(i, 2);
  if (typeof joined === 'string') raw.push('cookie', joined);
}
