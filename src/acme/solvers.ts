// Challenge solvers and the responders that answer the CA's validation requests. Each
// challenge is kept in memory (fast path) and in storage, so a gateway process sharing the
// storage can answer a validation for an order another process placed.
import { createSecureContext, type SecureContext } from 'node:tls';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../log.ts';
import { keys } from '../storage/layout.ts';
import { retryStorageErrors, type Storage, type StorageRetry } from '../storage/storage.ts';
import { StoredTokens, TOKEN_STORAGE_RETRY } from '../storage/tokens.ts';
import type { ChallengeSolver } from './authorize.ts';
import { createTlsAlpnCertificate } from './x509.ts';

const TOKEN = /^[A-Za-z0-9_-]{1,256}$/;
/** The path prefix of http-01 validation requests (RFC 8555 §8.3). */
export const HTTP01_PREFIX = '/.well-known/acme-challenge/';

/** http-01: the key authorization served at HTTP01_PREFIX + token by every instance (via storage). */
export class Http01Solver implements ChallengeSolver {
  readonly type = 'http-01' as const;
  private readonly tokens: StoredTokens;

  constructor(storage: Storage, logger: Logger) {
    this.tokens = new StoredTokens({
      storage,
      logger,
      prefix: HTTP01_PREFIX,
      keyOf: keys.http01Token,
      tokenPattern: TOKEN,
      contentType: 'application/octet-stream',
      unknownBody: 'unknown challenge\n',
      step: 'http-01-validation',
      onAnswer: (host, token, found, req) =>
        logger.info({ domain: host, step: 'http-01-validation', token, found, ua: req.headers['user-agent'] }, 'http-01 challenge request'),
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
