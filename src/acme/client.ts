// A focused RFC 8555 client: account, orders, authorizations, challenges, finalize, download.
// Every request after the directory is a JWS POST (POST-as-GET for reads). Nonces are pooled
// from every response; badNonce is retried with the nonce the error carried.
import { rootCertificates } from 'node:tls';
import { isIP } from 'node:net';
import type { KeyObject } from 'node:crypto';
import type { Dispatcher } from 'undici';
import { undici } from '../util/undici.ts';
import { silentLogger, type Logger } from '../log.ts';
import { AcmeError, ACME_ERROR, LocalErrorType, type AcmeIdentifier, type AcmeProblem } from './errors.ts';
import { base64url, jwkThumbprint, publicJwk, signExternalAccountBinding, signJws } from './jws.ts';

export interface AcmeClientOptions {
  directoryUrl: string;
  /** ECDSA P-256 private key (ES256). P-384/P-521/RSA keys also work. */
  accountKey: KeyObject;
  /** Known account URL (kid); skips newAccount. */
  accountUrl?: string;
  email?: string;
  /** Extra CA PEMs trusted for the ACME server's TLS, in addition to the system roots. */
  trustedRoots?: string[];
  /** External Account Binding; hmacKey is base64url. */
  eab?: { kid: string; hmacKey: string };
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

export interface AcmeDirectory {
  newNonce: string;
  newAccount: string;
  newOrder: string;
  revokeCert?: string;
  keyChange?: string;
  newAuthz?: string;
  renewalInfo?: string;
  meta?: {
    termsOfService?: string;
    website?: string;
    caaIdentities?: string[];
    externalAccountRequired?: boolean;
    profiles?: Record<string, string>;
  };
  [key: string]: unknown;
}

export type OrderStatus = 'pending' | 'ready' | 'processing' | 'valid' | 'invalid';
export type AuthorizationStatus = 'pending' | 'valid' | 'invalid' | 'deactivated' | 'expired' | 'revoked';
export type ChallengeStatus = 'pending' | 'processing' | 'valid' | 'invalid';

export interface AcmeOrder {
  /** The order URL (Location of newOrder). */
  url: string;
  status: OrderStatus;
  expires?: string;
  identifiers: AcmeIdentifier[];
  notBefore?: string;
  notAfter?: string;
  error?: AcmeProblem;
  authorizations: string[];
  finalize: string;
  certificate?: string;
  profile?: string;
  replaces?: string;
}

export interface AcmeChallenge {
  type: string;
  url: string;
  status: ChallengeStatus;
  token: string;
  validated?: string;
  error?: AcmeProblem;
}

export interface AcmeAuthorization {
  url: string;
  identifier: AcmeIdentifier;
  status: AuthorizationStatus;
  expires?: string;
  challenges: AcmeChallenge[];
  wildcard?: boolean;
}

export interface WaitOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
}

interface AcmeResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /** Parsed JSON when the answer is JSON, otherwise undefined. */
  json: unknown;
  text: string;
}

interface RequestContext {
  step: string;
  domain?: string;
}

const NONCE_POOL_MAX = 16;
const BAD_NONCE_RETRIES = 5;
const DEFAULT_WAIT_MS = 60_000;

function header(res: AcmeResponse, name: string): string | undefined {
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

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function identifierFor(domain: string): AcmeIdentifier {
  return { type: isIP(domain) ? 'ip' : 'dns', value: domain };
}

export class AcmeClient {
  readonly directoryUrl: string;
  private readonly accountKey: KeyObject;
  private readonly email: string | undefined;
  private readonly eab: { kid: string; hmacKey: string } | undefined;
  private readonly log: Logger;
  private readonly userAgent: string;
  private readonly pollInitialMs: number;
  private readonly pollMaxMs: number;
  private readonly maxRetryAfterMs: number;
  private readonly requestTimeoutMs: number;
  private readonly badNonceRetries: number;
  private readonly dispatcher: Dispatcher;
  private readonly ownsDispatcher: boolean;
  private readonly thumbprint: string;
  private readonly nonces: string[] = [];
  private directory: Promise<AcmeDirectory> | undefined;
  private account: Promise<string> | undefined;

  constructor(opts: AcmeClientOptions) {
    this.directoryUrl = opts.directoryUrl;
    this.accountKey = opts.accountKey;
    this.email = opts.email;
    this.eab = opts.eab;
    this.log = opts.logger ?? silentLogger();
    this.userAgent = opts.userAgent ?? 'certgate/0.1';
    this.pollInitialMs = opts.pollInitialMs ?? 250;
    this.pollMaxMs = Math.max(opts.pollMaxMs ?? 2000, this.pollInitialMs);
    this.maxRetryAfterMs = opts.maxRetryAfterMs ?? 10_000;
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 30_000;
    this.badNonceRetries = opts.badNonceRetries ?? BAD_NONCE_RETRIES;
    if (opts.dispatcher) {
      this.dispatcher = opts.dispatcher;
      this.ownsDispatcher = false;
    } else {
      this.dispatcher = new (undici().Agent)({
        connect: { ca: [...rootCertificates, ...(opts.trustedRoots ?? [])] },
        keepAliveTimeout: 10_000,
        connections: 8,
      });
      this.ownsDispatcher = true;
    }
    this.thumbprint = jwkThumbprint(publicJwk(this.accountKey));
    if (opts.accountUrl !== undefined) this.account = Promise.resolve(opts.accountUrl);
  }

  /** Closes the HTTP connection pool (only the one this client created). */
  async close(): Promise<void> {
    if (this.ownsDispatcher) await this.dispatcher.close();
  }

  /** The account URL when already known (no request). */
  async knownAccountUrl(): Promise<string | undefined> {
    return this.account?.catch(() => undefined);
  }

  // ---------------------------------------------------------------- HTTP plumbing

  private async http(
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
      const ms = Math.round(performance.now() - started);
      const aborted = opts.signal?.aborted === true;
      const timedOut = !aborted && (timeout.aborted || (err as { code?: string }).code?.includes('TIMEOUT') === true);
      this.log.debug({ step: ctx.step, domain: ctx.domain, method, url, ms, err: String(err) }, 'acme request failed');
      throw new AcmeError({
        type: aborted ? LocalErrorType.aborted : timedOut ? LocalErrorType.timeout : LocalErrorType.network,
        status: 0,
        detail: aborted
          ? `${method} ${url} aborted`
          : timedOut
            ? `${method} ${url} timed out after ${ms} ms`
            : `${method} ${url}: ${(err as Error).message}`,
        step: ctx.step,
        domain: ctx.domain,
        cause: err,
      });
    }
    const response: AcmeResponse = { status: res.statusCode, headers: res.headers, json: undefined, text };
    const nonce = header(response, 'replay-nonce');
    if (nonce) {
      this.nonces.push(nonce);
      if (this.nonces.length > NONCE_POOL_MAX) this.nonces.shift();
    }
    const type = header(response, 'content-type') ?? '';
    if (/json/i.test(type) && text.length > 0) {
      try {
        response.json = JSON.parse(text);
      } catch {
        // left undefined; handled by callers / problem mapping below
      }
    }
    const retryAfter = header(response, 'retry-after');
    this.log.debug(
      {
        step: ctx.step,
        domain: ctx.domain,
        method,
        url,
        status: res.statusCode,
        ms: Math.round(performance.now() - started),
        ...(retryAfter !== undefined ? { retryAfter } : {}),
      },
      'acme request',
    );
    return response;
  }

  private problemError(res: AcmeResponse, ctx: RequestContext): AcmeError {
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

  private async takeNonce(ctx: RequestContext): Promise<string> {
    const pooled = this.nonces.pop();
    if (pooled) return pooled;
    const dir = await this.getDirectory();
    const res = await this.http('HEAD', dir.newNonce, { step: 'new-nonce', domain: ctx.domain });
    if (res.status !== 200 && res.status !== 204) throw this.problemError(res, { ...ctx, step: 'new-nonce' });
    const nonce = this.nonces.pop();
    if (!nonce) {
      throw new AcmeError({
        type: LocalErrorType.protocol,
        status: res.status,
        detail: 'newNonce answered without a Replay-Nonce header',
        step: 'new-nonce',
        domain: ctx.domain,
      });
    }
    return nonce;
  }

  /**
   * A signed POST. `payload` undefined = POST-as-GET. Uses the account URL as kid unless
   * `useJwk` (newAccount). Retries badNonce up to 5 times and re-creates a vanished account once.
   */
  private async post(
    url: string,
    payload: unknown,
    ctx: RequestContext,
    opts: { useJwk?: boolean; accept?: string; signal?: AbortSignal } = {},
  ): Promise<AcmeResponse> {
    let accountRetried = false;
    let badNonces = 0;
    for (;;) {
      const kid = opts.useJwk ? undefined : await this.ensureAccount();
      const nonce = await this.takeNonce(ctx);
      const jws = signJws({ key: this.accountKey, url, nonce, kid, payload });
      const res = await this.http('POST', url, ctx, {
        body: JSON.stringify(jws),
        accept: opts.accept,
        signal: opts.signal,
      });
      if (res.status < 400) return res;
      const err = this.problemError(res, ctx);
      if (err.type === `${ACME_ERROR}badNonce` && badNonces < this.badNonceRetries) {
        badNonces++;
        this.log.debug({ step: ctx.step, domain: ctx.domain, retry: badNonces }, 'acme badNonce, retrying');
        continue;
      }
      if (err.type === `${ACME_ERROR}accountDoesNotExist` && !opts.useJwk && !accountRetried) {
        // The CA forgot our account (e.g. a restarted test CA): register again, once.
        accountRetried = true;
        this.log.debug({ step: ctx.step, domain: ctx.domain }, 'acme account does not exist, registering again');
        this.account = undefined;
        continue;
      }
      throw err;
    }
  }

  private requireLocation(res: AcmeResponse, ctx: RequestContext): string {
    const location = header(res, 'location');
    if (!location) {
      throw new AcmeError({
        type: LocalErrorType.protocol,
        status: res.status,
        detail: 'answer has no Location header',
        step: ctx.step,
        domain: ctx.domain,
      });
    }
    return new URL(location, this.directoryUrl).toString();
  }

  private requireJson<T>(res: AcmeResponse, ctx: RequestContext): T {
    if (typeof res.json !== 'object' || res.json === null) {
      throw new AcmeError({
        type: LocalErrorType.protocol,
        status: res.status,
        detail: `expected a JSON object, got: ${res.text.slice(0, 200)}`,
        step: ctx.step,
        domain: ctx.domain,
      });
    }
    return res.json as T;
  }

  // ---------------------------------------------------------------- ACME resources

  getDirectory(): Promise<AcmeDirectory> {
    if (!this.directory) {
      const p = (async () => {
        const ctx = { step: 'directory' };
        const res = await this.http('GET', this.directoryUrl, ctx);
        if (res.status !== 200) throw this.problemError(res, ctx);
        const dir = this.requireJson<AcmeDirectory>(res, ctx);
        if (typeof dir.newNonce !== 'string' || typeof dir.newAccount !== 'string' || typeof dir.newOrder !== 'string') {
          throw new AcmeError({
            type: LocalErrorType.protocol,
            status: res.status,
            detail: 'directory lacks newNonce/newAccount/newOrder',
            step: 'directory',
          });
        }
        return dir;
      })();
      this.directory = p;
      p.catch(() => {
        if (this.directory === p) this.directory = undefined;
      });
    }
    return this.directory;
  }

  /** Registers (or finds) the account for this key; returns its URL. Cached. */
  ensureAccount(): Promise<string> {
    if (!this.account) {
      const p = this.newAccount();
      this.account = p;
      p.catch(() => {
        if (this.account === p) this.account = undefined;
      });
    }
    return this.account;
  }

  private async newAccount(): Promise<string> {
    const started = performance.now();
    const ctx = { step: 'new-account' };
    const dir = await this.getDirectory();
    const payload: Record<string, unknown> = { termsOfServiceAgreed: true };
    if (this.email) payload.contact = [`mailto:${this.email}`];
    if (this.eab) {
      payload.externalAccountBinding = signExternalAccountBinding({
        kid: this.eab.kid,
        hmacKey: this.eab.hmacKey,
        url: dir.newAccount,
        accountKey: this.accountKey,
      });
    }
    const res = await this.post(dir.newAccount, payload, ctx, { useJwk: true });
    const url = this.requireLocation(res, ctx);
    this.log.debug(
      { step: 'new-account', url, created: res.status === 201, ms: Math.round(performance.now() - started) },
      'acme account',
    );
    return url;
  }

  async newOrder(domains: string[], opts: { profile?: string; replaces?: string } = {}): Promise<AcmeOrder> {
    const ctx = { step: 'new-order', domain: domains.join(',') };
    if (domains.length === 0) throw new Error('newOrder: no domains');
    const dir = await this.getDirectory();
    const payload: Record<string, unknown> = { identifiers: domains.map(identifierFor) };
    if (opts.profile !== undefined) {
      // A CA that does not advertise the profile would reject the order (or ignore the field).
      if (dir.meta?.profiles && Object.hasOwn(dir.meta.profiles, opts.profile)) payload.profile = opts.profile;
      else this.warnUnadvertisedProfile(opts.profile, dir, ctx.domain);
    }
    if (opts.replaces !== undefined) payload.replaces = opts.replaces;
    const res = await this.post(dir.newOrder, payload, ctx);
    const url = this.requireLocation(res, ctx);
    return { ...this.requireJson<Omit<AcmeOrder, 'url'>>(res, ctx), url };
  }

  private readonly profileWarnings = new Set<string>();

  private warnUnadvertisedProfile(profile: string, dir: AcmeDirectory, domain: string): void {
    if (this.profileWarnings.has(profile)) return;
    this.profileWarnings.add(profile);
    const advertised = Object.keys(dir.meta?.profiles ?? {});
    this.log.warn(
      { domain, step: 'new-order', profile, advertised },
      `ACME profile "${profile}" is not advertised by ${this.directoryUrl}; orders are placed without a profile`,
    );
  }

  /**
   * ARI (RFC 9773): the CA's suggested renewal window for a certificate ID, with Retry-After.
   * Null when the directory has no renewalInfo. An unauthenticated GET.
   */
  async renewalInfo(
    certId: string,
    domain?: string,
  ): Promise<{ suggestedWindow: { start: string; end: string }; explanationURL?: string; retryAfterMs?: number } | null> {
    const ctx = { step: 'renewal-info', domain };
    const dir = await this.getDirectory();
    if (typeof dir.renewalInfo !== 'string') return null;
    const res = await this.http('GET', `${dir.renewalInfo.replace(/\/$/, '')}/${certId}`, ctx);
    if (res.status !== 200) throw this.problemError(res, ctx);
    const info = this.requireJson<{ suggestedWindow?: { start?: unknown; end?: unknown }; explanationURL?: unknown }>(res, ctx);
    const { start, end } = info.suggestedWindow ?? {};
    if (typeof start !== 'string' || typeof end !== 'string') {
      throw new AcmeError({ type: LocalErrorType.protocol, status: res.status, detail: 'renewalInfo without suggestedWindow', step: ctx.step, domain });
    }
    const retryAfterMs = parseRetryAfter(header(res, 'retry-after'));
    return {
      suggestedWindow: { start, end },
      ...(typeof info.explanationURL === 'string' ? { explanationURL: info.explanationURL } : {}),
      ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
    };
  }

  async getOrder(url: string): Promise<AcmeOrder> {
    const ctx = { step: 'order' };
    const res = await this.post(url, undefined, ctx);
    return { ...this.requireJson<Omit<AcmeOrder, 'url'>>(res, ctx), url };
  }

  async getAuthorization(url: string): Promise<AcmeAuthorization> {
    const ctx = { step: 'authorization' };
    const res = await this.post(url, undefined, ctx);
    return { ...this.requireJson<Omit<AcmeAuthorization, 'url'>>(res, ctx), url };
  }

  /** `token.thumbprint(accountKey)`. */
  keyAuthorization(token: string): string {
    return `${token}.${this.thumbprint}`;
  }

  /** Tells the CA the challenge is ready to be validated. */
  async respondToChallenge(challengeUrl: string, domain?: string): Promise<AcmeChallenge> {
    const ctx = { step: 'challenge', domain };
    const res = await this.post(challengeUrl, {}, ctx);
    return this.requireJson<AcmeChallenge>(res, ctx);
  }

  async deactivateAuthorization(url: string): Promise<AcmeAuthorization> {
    const ctx = { step: 'deactivate-authorization' };
    const res = await this.post(url, { status: 'deactivated' }, ctx);
    return { ...this.requireJson<Omit<AcmeAuthorization, 'url'>>(res, ctx), url };
  }

  /** Polls until the authorization is valid. Throws AcmeError (with the challenge error) otherwise. */
  async waitForAuthorization(url: string, opts: WaitOptions = {}): Promise<AcmeAuthorization> {
    return this.poll<AcmeAuthorization>(
      async (signal) => {
        const ctx = { step: 'authorization' };
        const res = await this.post(url, undefined, ctx, { signal });
        const authz = { ...this.requireJson<Omit<AcmeAuthorization, 'url'>>(res, ctx), url };
        const domain = authz.identifier?.value;
        if (authz.status === 'valid') return { done: authz };
        if (authz.status === 'pending') return { retryAfter: header(res, 'retry-after'), domain };
        const failed = authz.challenges?.find((c) => c.error) ?? authz.challenges?.find((c) => c.status === 'invalid');
        const problem = failed?.error;
        throw new AcmeError({
          type: problem?.type ?? `${ACME_ERROR}unauthorized`,
          status: problem?.status ?? res.status,
          detail:
            (failed ? `${failed.type} challenge: ` : '') +
            (problem?.detail ?? `authorization is ${authz.status}`),
          step: 'authorization',
          domain,
          subproblems: problem?.subproblems,
        });
      },
      { step: 'authorization', ...opts },
    );
  }

  /**
   * Waits for the order to be ready (if pending), POSTs the CSR to finalize and polls until
   * the order is valid. Returns the valid order (with `certificate`).
   */
  async finalizeOrder(
    order: AcmeOrder,
    csrDer: Uint8Array,
    opts: WaitOptions = {},
  ): Promise<AcmeOrder> {
    const domain = order.identifiers?.map((i) => i.value).join(',');
    const ctx = { step: 'finalize', domain };
    const deadline = Date.now() + (opts.timeoutMs ?? DEFAULT_WAIT_MS);
    const remaining = (): number => Math.max(1, deadline - Date.now());
    let current = order;
    if (current.status === 'pending') current = await this.waitForOrder(order.url, ['ready', 'valid', 'processing'], { ...opts, timeoutMs: remaining() }, ctx);
    if (current.status === 'ready') {
      const res = await this.post(current.finalize, { csr: base64url(csrDer) }, ctx, { signal: opts.signal });
      current = { ...this.requireJson<Omit<AcmeOrder, 'url'>>(res, ctx), url: order.url };
    }
    if (current.status !== 'valid') current = await this.waitForOrder(order.url, ['valid'], { ...opts, timeoutMs: remaining() }, ctx);
    if (!current.certificate) {
      throw new AcmeError({
        type: LocalErrorType.protocol,
        status: 0,
        detail: 'order is valid but has no certificate URL',
        step: 'finalize',
        domain,
      });
    }
    return current;
  }

  private async waitForOrder(
    url: string,
    wanted: OrderStatus[],
    opts: WaitOptions,
    ctx: RequestContext,
  ): Promise<AcmeOrder> {
    return this.poll<AcmeOrder>(
      async (signal) => {
        const res = await this.post(url, undefined, ctx, { signal });
        const order = { ...this.requireJson<Omit<AcmeOrder, 'url'>>(res, ctx), url };
        if (wanted.includes(order.status)) return { done: order };
        if (order.status === 'invalid' || (order.status === 'ready' && !wanted.includes('ready'))) {
          throw new AcmeError({
            type: order.error?.type ?? `${ACME_ERROR}orderNotReady`,
            status: order.error?.status ?? res.status,
            detail: order.error?.detail ?? `order is ${order.status}`,
            step: ctx.step,
            domain: ctx.domain,
            subproblems: order.error?.subproblems,
          });
        }
        return { retryAfter: header(res, 'retry-after') };
      },
      { ...opts, step: ctx.step, domain: ctx.domain },
    );
  }

  /** Downloads the certificate chain of a valid order: PEM, leaf first. */
  async downloadCertificate(order: AcmeOrder): Promise<string> {
    const domain = order.identifiers?.map((i) => i.value).join(',');
    const ctx = { step: 'download', domain };
    if (!order.certificate) {
      throw new AcmeError({ type: LocalErrorType.protocol, status: 0, detail: 'order has no certificate URL', step: 'download', domain });
    }
    const res = await this.post(order.certificate, undefined, ctx, { accept: 'application/pem-certificate-chain' });
    if (!res.text.includes('-----BEGIN CERTIFICATE-----')) {
      throw new AcmeError({
        type: LocalErrorType.protocol,
        status: res.status,
        detail: `certificate download is not PEM: ${res.text.slice(0, 100)}`,
        step: 'download',
        domain,
      });
    }
    return res.text.endsWith('\n') ? res.text : `${res.text}\n`;
  }

  /**
   * Revokes a certificate (RFC 8555 §7.6), signed with the account key: the account must be the
   * one that ordered it (or hold authorizations for all its names). `reason` is an RFC 5280
   * CRLReason code (0 unspecified, 1 keyCompromise, 4 superseded, 5 cessationOfOperation).
   */
  async revokeCertificate(certPem: string, opts: { reason?: number; domain?: string } = {}): Promise<void> {
    const ctx = { step: 'revoke', domain: opts.domain };
    const dir = await this.getDirectory();
    if (!dir.revokeCert) {
      throw new AcmeError({ type: LocalErrorType.protocol, status: 0, detail: 'the CA directory has no revokeCert', step: 'revoke', domain: opts.domain });
    }
    const leaf = /-----BEGIN CERTIFICATE-----([^-]+)-----END CERTIFICATE-----/.exec(certPem);
    if (!leaf) throw new Error(`revokeCertificate: no PEM certificate given (domain ${opts.domain ?? '?'}, step revoke)`);
    const der = Buffer.from(leaf[1]!.replace(/\s+/g, ''), 'base64');
    const payload: Record<string, unknown> = { certificate: der.toString('base64url') };
    if (opts.reason !== undefined) payload.reason = opts.reason;
    await this.post(dir.revokeCert, payload, ctx);
  }

  // ---------------------------------------------------------------- polling

  /** Next delay: Retry-After (capped) when given, else backoff ×1.5 from pollInitialMs up to pollMaxMs. */
  private nextDelay(retryAfter: string | undefined, previous: number | undefined): { delay: number; backoff: number } {
    const backoff = previous === undefined ? this.pollInitialMs : Math.min(previous * 1.5, this.pollMaxMs);
    const ra = parseRetryAfter(retryAfter);
    if (ra !== undefined) return { delay: Math.min(Math.max(ra, 0), this.maxRetryAfterMs), backoff };
    return { delay: backoff, backoff };
  }

  private async poll<T>(
    once: (signal: AbortSignal) => Promise<{ done: T } | { retryAfter: string | undefined; domain?: string }>,
    opts: WaitOptions & { step: string; domain?: string },
  ): Promise<T> {
    const timeoutMs = opts.timeoutMs ?? DEFAULT_WAIT_MS;
    const timer = AbortSignal.timeout(timeoutMs);
    const signal = opts.signal ? AbortSignal.any([timer, opts.signal]) : timer;
    const started = performance.now();
    let backoff: number | undefined;
    let domain = opts.domain;
    let polls = 0;
    const fail = (cause: unknown): AcmeError => {
      if (opts.signal?.aborted) {
        return new AcmeError({
          type: LocalErrorType.aborted,
          status: 0,
          detail: `aborted after ${Math.round(performance.now() - started)} ms`,
          step: opts.step,
          domain,
          cause,
        });
      }
      return new AcmeError({
        type: LocalErrorType.timeout,
        status: 0,
        detail: `not done after ${timeoutMs} ms (${polls} polls)`,
        step: opts.step,
        domain,
        cause,
      });
    };
    for (;;) {
      if (signal.aborted) throw fail(signal.reason);
      let result: Awaited<ReturnType<typeof once>>;
      try {
        polls++;
        result = await once(signal);
      } catch (err) {
        if (signal.aborted && err instanceof AcmeError && (err.type === LocalErrorType.aborted || err.type === LocalErrorType.timeout)) {
          throw fail(err);
        }
        throw err;
      }
      if ('done' in result) {
        this.log.debug({ step: opts.step, domain, polls, ms: Math.round(performance.now() - started) }, 'acme poll done');
        return result.done;
      }
      domain ??= result.domain;
      const next = this.nextDelay(result.retryAfter, backoff);
      backoff = next.backoff;
      try {
        await sleep(next.delay, signal);
      } catch (err) {
        throw fail(err);
      }
    }
  }
}

export { obtainCertificate, SOLVER_ERROR } from './obtain.ts';
export type { ChallengeSolver, ChallengeType, ObtainOptions, ObtainResult } from './obtain.ts';
