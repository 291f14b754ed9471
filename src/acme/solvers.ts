// Challenge solvers and the responders that answer the CA's validation requests. Each
// challenge is kept in memory (fast path) and in storage, so a gateway process sharing the
// storage can answer a validation for an order another process placed.
import { createSecureContext, type SecureContext } from 'node:tls';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../util/log.ts';
import { clientAddress } from '../net/client-address.ts';
import { keys } from '../storage/keys.ts';
import { retryStorageErrors, type Storage, type StorageRetry } from '../storage/storage.ts';
import { StoredTokens, TOKEN_STORAGE_RETRY } from '../storage/tokens.ts';
import { LogSampler, truncateForLog, type LogSamplerOptions } from '../util/log-sampler.ts';
import type { ChallengeSolver } from './authorize.ts';
import { createTlsAlpnCertificate } from './x509.ts';

/**
 * An ACME token as RFC 8555 §8.1 allows it: base64url with at least 128 bits of entropy, so 22+
 * characters (Let's Encrypt and Pebble send 43). Anything else is answered 404 without a storage
 * read, so scanners probing the path cost nothing.
 */
const TOKEN = /^[A-Za-z0-9_-]{22,256}$/;
/** The path prefix of http-01 validation requests (RFC 8555 §8.3). */
export const HTTP01_PREFIX = '/.well-known/acme-challenge/';

/** Unknown challenge requests and handshakes are logged at most this often (then counted). */
const UNKNOWN_LOG = { maxPerInterval: 5, intervalMs: 10_000 } as const;
/** Attacker-chosen strings are cut to this in log lines. */
const LOGGED_UA_CHARS = 100;
const LOGGED_UNKNOWN_TOKEN_CHARS = 16;

/** http-01: the key authorization served at HTTP01_PREFIX + token by every instance (via storage). */
export class Http01Solver implements ChallengeSolver {
  readonly type = 'http-01' as const;
  private readonly tokens: StoredTokens;

  constructor(storage: Storage, logger: Logger, opts: { unknownLog?: LogSamplerOptions } = {}) {
    // A real validation is logged every time; an unknown token (a scanner, a stale CA retry)
    // only as sampled, with token and User-Agent cut, so a flood cannot fill the disk.
    const unknown = new LogSampler(opts.unknownLog ?? UNKNOWN_LOG);
    this.tokens = new StoredTokens({
      storage,
      logger,
      prefix: HTTP01_PREFIX,
      keyOf: keys.http01Token,
      tokenPattern: TOKEN,
      contentType: 'application/octet-stream',
      unknownBody: 'unknown challenge\n',
      step: 'http-01-validation',
      onAnswer: (host, token, found, req) => {
        const ua = truncateForLog(req.headers['user-agent'], LOGGED_UA_CHARS);
        if (found) {
          logger.info({ domain: host, step: 'http-01-validation', token, found, ua, client: clientAddress(req.socket) }, 'http-01 challenge request');
          return;
        }
        const suppressedSinceLastLine = unknown.sample();
        if (suppressedSinceLastLine === undefined) return;
        logger.info(
          { domain: truncateForLog(host, 253), step: 'http-01-validation', token: truncateForLog(token, LOGGED_UNKNOWN_TOKEN_CHARS), found, ua, client: clientAddress(req.socket), suppressedSinceLastLine },
          'http-01 request for an unknown token (logged at most 5 per 10 s)',
        );
      },
    });
  }

  async present(domain: string, token: string, keyAuthorization: string): Promise<void> {
    await this.tokens.set(token, keyAuthorization, domain);
  }

  async cleanup(_domain: string, token: string, _keyAuthorization?: string): Promise<void> {
    await this.tokens.delete(token);
  }

  /** Handles the request if it is an http-01 validation; returns false otherwise. */
  handle(req: IncomingMessage, res: ServerResponse): boolean {
    return this.tokens.handle(req, res);
  }
}

/** tls-alpn-01: a validation certificate served to `acme-tls/1` handshakes by every instance (via storage). */
export class TlsAlpn01Solver implements ChallengeSolver {
  readonly type = 'tls-alpn-01' as const;
  private readonly contexts = new Map<string, SecureContext>();
  private readonly unknownLog = new LogSampler(UNKNOWN_LOG);

  constructor(
    private readonly storage: Storage,
    private readonly logger?: Logger,
    /** How long storage errors are retried (see StoredTokens); default TOKEN_STORAGE_RETRY. */
    private readonly storageRetry: StorageRetry = TOKEN_STORAGE_RETRY,
  ) {}

  async present(domain: string, _token: string, keyAuthorization: string): Promise<void> {
    const { certPem, keyPem } = await createTlsAlpnCertificate(domain, keyAuthorization);
    this.contexts.set(domain, createSecureContext({ cert: certPem, key: keyPem }));
    await this.retryStorage(domain, 'challenge', 'challenge certificate write', async () => {
      await this.storage.put(keys.tlsAlpnKey(domain), keyPem, { private: true });
      await this.storage.put(keys.tlsAlpnCert(domain), certPem);
    });
  }

  async cleanup(domain: string, _token?: string, _keyAuthorization?: string): Promise<void> {
    this.contexts.delete(domain);
    await this.storage.delete(keys.tlsAlpnCert(domain));
    await this.storage.delete(keys.tlsAlpnKey(domain));
  }

  /** The validation certificate of a challenge this process presented; no storage read. */
  localContext(domain: string): SecureContext | undefined {
    return this.contexts.get(domain);
  }

  /**
   * Logs a validation handshake for which no challenge is pending, sampled: random names cost
   * a few lines per interval, with the count of those left out.
   */
  logUnknown(domain: string): void {
    const suppressedSinceLastLine = this.unknownLog.sample();
    if (suppressedSinceLastLine === undefined) return;
    this.logger?.warn({ domain, step: 'tls-alpn-01-validation', suppressedSinceLastLine }, 'tls-alpn-01 request with no pending challenge (logged at most 5 per 10 s)');
  }

  /** The validation certificate for `domain`, from memory or storage; null when none is pending. */
  async contextFor(domain: string): Promise<SecureContext | null> {
    const local = this.contexts.get(domain);
    if (local) return local;
    // The CA's validation handshake waits while this instance's storage reconnects (see StoredTokens).
    const [cert, key] = await this.retryStorage(domain, 'tls-alpn-01-validation', 'challenge certificate lookup', () =>
      Promise.all([this.storage.get(keys.tlsAlpnCert(domain)), this.storage.get(keys.tlsAlpnKey(domain))]),
    );
    if (!cert || !key) return null;
    return createSecureContext({ cert, key });
  }

  private retryStorage<T>(domain: string, step: string, what: string, op: () => Promise<T>): Promise<T> {
    return retryStorageErrors(op, this.storageRetry, this.logger && { logger: this.logger, fields: { domain, step }, message: `${what} failed; retrying until storage is back` });
  }
}
