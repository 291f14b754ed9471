// How bytes reach one ACME server (RFC 8555 §6): every request goes through here.
//
//   1. request()     one HTTP exchange (undici, own connection pool, time-out), logged at debug;
//                    every Replay-Nonce an answer carries goes into the nonce pool (§6.5)
//   2. takeNonce()   a pooled nonce, else a HEAD to newNonce
//   3. signedPost()  JWS-signs with a fresh nonce; a badNonce answer is retried with the nonce
//                    that answer carried, up to `badNonceRetries` times (§6.5)
//   4. helpers       the problem document of a failed answer, the JSON body, the Location header
// Which resource is asked for, and with which key, is up to the resource files beside this one.
import type { KeyObject } from 'node:crypto';
import { createSecureContext, rootCertificates } from 'node:tls';
import type { Dispatcher } from 'undici';
import { undici } from '../../util/undici.ts';
import { silentLogger, type Logger } from '../../util/log.ts';
import { AcmeError, ACME_ERROR, LocalErrorType, type AcmeProblem } from './errors.ts';
import { signJws } from './jws.ts';

/** How to reach one ACME server. Only `directoryUrl` is required; the rest have working defaults. */
export interface TransportOptions {
  directoryUrl: string;
  /** Extra CA PEMs trusted for the ACME server's TLS, in addition to the system roots. */
  trustedRoots?: string[];
  logger?: Logger;
  /** Default 'certgate/0.1'. */
  userAgent?: string;
  /** First polling interval without Retry-After. Default 250 ms. */
  pollInitialMs?: number;
  /** Upper bound of the polling interval without Retry-After. Default 2000 ms. */
  pollMaxMs?: number;
  /** Upper bound applied to Retry-After while polling. Default 10 000 ms. */
  maxRetryAfterMs?: number;
  /** Time-out of one HTTP request (connect to end of body). Default 30 000 ms. */
  requestTimeoutMs?: number;
  /** How often a request rejected with badNonce is retried with the nonce from the error. Default 5. */
  badNonceRetries?: number;
  /** Use this dispatcher instead of creating an undici Agent (trustedRoots is then ignored). */
  dispatcher?: Dispatcher;
}

/** One answer of the ACME server, body read in full. */
export interface AcmeResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /** Parsed JSON when the answer is JSON, otherwise undefined. */
  json: unknown;
  text: string;
}

/** What a request is for: lands in logs and in the AcmeError of a failure. */
export interface RequestContext {
  step: string;
  domain?: string;
}

/** How a signed POST is signed: the key, and `kid` (the account URL) or, without it, the `jwk`. */
export interface Signer {
  key: KeyObject;
  kid?: string;
}

/** How polling waits between requests (see poll.ts). */
export interface PollTiming {
  pollInitialMs: number;
  pollMaxMs: number;
  maxRetryAfterMs: number;
}

const NONCE_POOL_MAX = 16;
const BAD_NONCE_RETRIES = 5;

/** The first value of a response header (undici gives repeated headers as an array). */
export function header(res: AcmeResponse, name: string): string | undefined {
  const v = res.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** Retry-After as milliseconds (delta-seconds or HTTP-date), or undefined when absent/invalid. */
export function parseRetryAfter(value: string | undefined, now = Date.now()): number | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const date = Date.parse(v);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
}

function isProblem(v: unknown): v is AcmeProblem {
  return typeof v === 'object' && v !== null && typeof (v as { type?: unknown }).type === 'string';
}

/**
 * The AcmeError for a failed answer: the CA's problem document when it sent one, else a local
 * `http` error with the start of the body. Carries Retry-After (rate limits, 503).
 */
export function problemError(res: AcmeResponse, ctx: RequestContext): AcmeError {
  const retryAfterMs = parseRetryAfter(header(res, 'retry-after'));
  if (isProblem(res.json)) {
    return new AcmeError({
      type: res.json.type,
      status: res.status,
      detail: res.json.detail ?? '',
      step: ctx.step,
      domain: ctx.domain,
      retryAfterMs,
      subproblems: res.json.subproblems,
    });
  }
  return new AcmeError({
    type: LocalErrorType.http,
    status: res.status,
    detail: `unexpected HTTP ${res.status}: ${res.text.slice(0, 200)}`,
    step: ctx.step,
    domain: ctx.domain,
    retryAfterMs,
  });
}

/** A local `protocol` AcmeError: the server's answer lacks what RFC 8555 requires. */
export function protocolError(detail: string, ctx: RequestContext, status = 0): AcmeError {
  return new AcmeError({ type: LocalErrorType.protocol, status, detail, step: ctx.step, domain: ctx.domain });
}

/** The JSON object of an answer; a `protocol` AcmeError when the body is not one. */
export function requireJson<T>(res: AcmeResponse, ctx: RequestContext): T {
  if (typeof res.json !== 'object' || res.json === null) {
    throw protocolError(`expected a JSON object, got: ${res.text.slice(0, 200)}`, ctx, res.status);
  }
  return res.json as T;
}

/** The Location header as an absolute URL (relative ones resolve against `base`); required. */
export function requireLocation(res: AcmeResponse, ctx: RequestContext, base: string): string {
  const location = header(res, 'location');
  if (!location) throw protocolError('answer has no Location header', ctx, res.status);
  return new URL(location, base).toString();
}

/**
 * The HTTP side of one ACME server: connection pool, nonce pool, signed POSTs. Shared by the
 * directory, every account and every resource of that server; `close()` ends the pool (only when
 * this transport created it).
 */
export class AcmeTransport {
  readonly directoryUrl: string;
  /** Debug lines per request; warnings of resource files go here too. */
  readonly log: Logger;
  /** How polling waits between requests (read by poll()). */
  readonly pollTiming: PollTiming;
  private readonly userAgent: string;
  private readonly requestTimeoutMs: number;
  private readonly badNonceRetries: number;
  // Made at the first request: an issuer is built at start-up, and loading undici there costs
  // every process ~40 ms of start-up for a CA it may not ask for a long time.
  private dispatcherInstance: Dispatcher | undefined;
  private readonly trustedRoots: readonly string[];
  private readonly ownsDispatcher: boolean;
  private readonly nonces: string[] = [];

  constructor(opts: TransportOptions) {
    this.directoryUrl = opts.directoryUrl;
    this.log = opts.logger ?? silentLogger();
    this.userAgent = opts.userAgent ?? 'certgate/0.1';
    const pollInitialMs = opts.pollInitialMs ?? 250;
    this.pollTiming = {
      pollInitialMs,
      pollMaxMs: Math.max(opts.pollMaxMs ?? 2000, pollInitialMs),
      maxRetryAfterMs: opts.maxRetryAfterMs ?? 10_000,
    };
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 30_000;
    this.badNonceRetries = opts.badNonceRetries ?? BAD_NONCE_RETRIES;
    this.ownsDispatcher = !opts.dispatcher;
    this.dispatcherInstance = opts.dispatcher;
    this.trustedRoots = opts.trustedRoots ?? [];
  }

  private get dispatcher(): Dispatcher {
    return (this.dispatcherInstance ??= new (undici().Agent)({
      // One TLS context for every connection to the CA. Given `ca` instead, node:tls builds a
      // context and parses all ~150 roots again for each new connection (~3-5 ms of CPU each).
      connect: { secureContext: createSecureContext({ ca: [...rootCertificates, ...this.trustedRoots] }) },
      keepAliveTimeout: 10_000,
      connections: 8,
      // HTTP/1.1 even where the CA offers h2 (Pebble, Let's Encrypt): an order's few requests gain
      // nothing from streams, and undici's h2 path cost ~0.3 ms more CPU per request
      // (bench/acme-transport-cpu.ts with a gap: 1.13 against 1.46 ms).
      allowH2: false,
    }));
  }

  /** Closes the HTTP connection pool (only the one this transport created). */
  async close(): Promise<void> {
    if (this.ownsDispatcher) await this.dispatcherInstance?.close();
  }

  /**
   * One HTTP exchange. Never throws for an HTTP status (callers decide what a status means);
   * throws an AcmeError (`network`, `timeout` or `aborted`) when no answer arrived.
   */
  async request(
    method: 'GET' | 'HEAD' | 'POST',
    url: string,
    ctx: RequestContext,
    opts: { body?: string; accept?: string; signal?: AbortSignal } = {},
  ): Promise<AcmeResponse> {
    const started = performance.now();
    const timeout = AbortSignal.timeout(this.requestTimeoutMs);
    const signal = opts.signal ? AbortSignal.any([timeout, opts.signal]) : timeout;
    const headers: Record<string, string> = { 'user-agent': this.userAgent };
    if (opts.body !== undefined) headers['content-type'] = 'application/jose+json';
    if (opts.accept) headers.accept = opts.accept;
    let res: Dispatcher.ResponseData;
    let text: string;
    try {
      res = await undici().request(url, {
        method,
        headers,
        body: opts.body,
        dispatcher: this.dispatcher,
        signal,
        headersTimeout: this.requestTimeoutMs,
        bodyTimeout: this.requestTimeoutMs,
      });
      text = method === 'HEAD' ? '' : await res.body.text();
      if (method === 'HEAD') await res.body.dump();
    } catch (err) {
      throw this.noAnswer(err, { method, url, ctx, started, timedOutSignal: timeout, callerSignal: opts.signal });
    }
    const response: AcmeResponse = { status: res.statusCode, headers: res.headers, json: undefined, text };
    this.keepNonce(response);
    const type = header(response, 'content-type') ?? '';
    if (/json/i.test(type) && text.length > 0) {
      try {
        response.json = JSON.parse(text);
      } catch {
        // left undefined; requireJson / problemError report the body
      }
    }
    const retryAfter = header(response, 'retry-after');
    this.log.debug(
      { step: ctx.step, domain: ctx.domain, method, url, status: res.statusCode, ms: Math.round(performance.now() - started), ...(retryAfter !== undefined ? { retryAfter } : {}) },
      'acme request',
    );
    return response;
  }

  /** A nonce from the pool, else from a HEAD to `newNonceUrl` (resolved only when needed). */
  async takeNonce(newNonceUrl: () => Promise<string>, ctx: RequestContext): Promise<string> {
    const pooled = this.nonces.pop();
    if (pooled) return pooled;
    const nonceCtx = { step: 'new-nonce', domain: ctx.domain };
    const res = await this.request('HEAD', await newNonceUrl(), nonceCtx);
    if (res.status !== 200 && res.status !== 204) throw problemError(res, nonceCtx);
    const nonce = this.nonces.pop();
    if (!nonce) throw protocolError('newNonce answered without a Replay-Nonce header', nonceCtx, res.status);
    return nonce;
  }

  /**
   * A JWS POST (`payload` undefined = POST-as-GET). Retries badNonce with the nonce the error
   * carried; any other status >= 400 comes back as an AcmeError. The signer is asked again on
   * every attempt, so an account can re-register in between (see AcmeAccount.post).
   */
  async signedPost(
    url: string,
    payload: unknown,
    ctx: RequestContext,
    signer: () => Promise<Signer>,
    newNonceUrl: () => Promise<string>,
    opts: { accept?: string; signal?: AbortSignal } = {},
  ): Promise<AcmeResponse> {
    for (let badNonces = 0; ; badNonces++) {
      const { key, kid } = await signer();
      const nonce = await this.takeNonce(newNonceUrl, ctx);
      const jws = signJws({ key, url, nonce, kid, payload });
      const res = await this.request('POST', url, ctx, { body: JSON.stringify(jws), accept: opts.accept, signal: opts.signal });
      if (res.status < 400) return res;
      const err = problemError(res, ctx);
      if (err.type !== `${ACME_ERROR}badNonce` || badNonces >= this.badNonceRetries) throw err;
      this.log.debug({ step: ctx.step, domain: ctx.domain, retry: badNonces + 1 }, 'acme badNonce, retrying');
    }
  }

  private keepNonce(res: AcmeResponse): void {
    const nonce = header(res, 'replay-nonce');
    if (!nonce) return;
    this.nonces.push(nonce);
    if (this.nonces.length > NONCE_POOL_MAX) this.nonces.shift();
  }

  /** The AcmeError of a request that got no answer: aborted by the caller, timed out, or network. */
  private noAnswer(
    err: unknown,
    r: { method: string; url: string; ctx: RequestContext; started: number; timedOutSignal: AbortSignal; callerSignal: AbortSignal | undefined },
  ): AcmeError {
    const { method, url, ctx } = r;
    const ms = Math.round(performance.now() - r.started);
    const aborted = r.callerSignal?.aborted === true;
    const timedOut = !aborted && (r.timedOutSignal.aborted || (err as { code?: string }).code?.includes('TIMEOUT') === true);
    this.log.debug({ step: ctx.step, domain: ctx.domain, method, url, ms, err: String(err) }, 'acme request failed');
    return new AcmeError({
      type: aborted ? LocalErrorType.aborted : timedOut ? LocalErrorType.timeout : LocalErrorType.network,
      status: 0,
      detail: aborted ? `${method} ${url} aborted` : timedOut ? `${method} ${url} timed out after ${ms} ms` : `${method} ${url}: ${(err as Error).message}`,
      step: ctx.step,
      domain: ctx.domain,
      cause: err,
    });
  }
}
