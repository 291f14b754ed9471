// Short-lived tokens answered over plain HTTP by every process on one storage: the value is kept
// in memory (fast path) and in storage, so the process that did not create a token still answers
// it. Serves the ACME http-01 responder and the pre-flight self-check probe.
//
// A storage error is retried for a few seconds before a lookup answers 500: the CA's validation
// often lands on another instance than the one that placed the order, and if that instance's
// Redis connection is still reconnecting (commands fail at once meanwhile), a 500 fails the
// authorization and the name goes into backoff for a storage blip, not a CA problem.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../util/log.ts';
import { retryStorageErrors, type Storage, type StorageRetry } from './storage.ts';

/**
 * Default for token reads and writes: up to 5 s, polling every 100-500 ms. Longer than the Redis
 * client's longest wait between reconnect attempts (about 2.1 s), well inside the time a CA
 * waits for a validation answer.
 */
export const TOKEN_STORAGE_RETRY: StorageRetry = { budgetMs: 5_000, initialDelayMs: 100, maxDelayMs: 500 };

/** What a StoredTokens needs: where tokens are stored, how they look, how answers are logged. */
export interface StoredTokensOptions {
  /** Shared storage, so any process on it answers a token another process set. */
  storage: Storage;
  /** Where retried storage errors and failed lookups are logged. */
  logger: Logger;
  /** URL path prefix the token follows, e.g. `/.well-known/acme-challenge/`. */
  prefix: string;
  /** Storage key of a token. */
  keyOf: (token: string) => string;
  /** Tokens not matching this are unknown without a storage read. */
  tokenPattern: RegExp;
  /** Content type of a found value. */
  contentType: string;
  /** Body of the 404 for an unknown token. */
  unknownBody: string;
  /** Log step of a failed lookup. */
  step: string;
  /** Sees every well-formed request, found or not (the http-01 responder logs each validation). */
  onAnswer?: (host: string, token: string, found: boolean, req: IncomingMessage) => void;
  /** How long storage errors are retried; default TOKEN_STORAGE_RETRY. */
  storageRetry?: StorageRetry;
}

/**
 * Tokens answered over HTTP by every process on one storage. set() resolves once the token is in
 * storage (retrying a storage outage up to storageRetry), so a CA asked to validate right after
 * reaches any instance.
 */
export class StoredTokens {
  private readonly local = new Map<string, string>();

  constructor(private readonly opts: StoredTokensOptions) {}

  /** `domain` is the name the token is for, for log lines. */
  async set(token: string, value: string, domain?: string): Promise<void> {
    this.local.set(token, value);
    const key = this.opts.keyOf(token);
    // Worthless after a crash (the CA's validation is over by then): no fsync on the order's path.
    await retryStorageErrors(() => this.opts.storage.put(key, value, { durable: false }), this.opts.storageRetry ?? TOKEN_STORAGE_RETRY, {
      logger: this.opts.logger,
      fields: { domain, step: this.opts.step, token },
      message: 'token write failed; retrying until storage is back',
    });
  }

  /** Forgets the token here and in storage (a storage error is thrown, not retried). */
  async delete(token: string): Promise<void> {
    this.local.delete(token);
    await this.opts.storage.delete(this.opts.keyOf(token));
  }

  /** Handles the request if its path is under the prefix; returns false otherwise. */
  handle(req: IncomingMessage, res: ServerResponse): boolean {
    const { prefix, tokenPattern, unknownBody, contentType } = this.opts;
    const url = req.url ?? '';
    if (!url.startsWith(prefix)) return false;
    const token = url.slice(prefix.length);
    if (!tokenPattern.test(token)) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end(unknownBody);
      return true;
    }
    // The Host may carry the port; logs name the bare domain.
    const host = (req.headers.host ?? '').replace(/:\d+$/, '').toLowerCase();
    const answer = (value: string | null) => {
      this.opts.onAnswer?.(host, token, value !== null, req);
      if (value === null) res.writeHead(404, { 'content-type': 'text/plain' }).end(unknownBody);
      else res.writeHead(200, { 'content-type': contentType }).end(value);
    };
    const local = this.local.get(token);
    if (local !== undefined) {
      answer(local);
      return true;
    }
    const key = this.opts.keyOf(token);
    const started = performance.now();
    retryStorageErrors(() => this.opts.storage.get(key), this.opts.storageRetry ?? TOKEN_STORAGE_RETRY, {
      logger: this.opts.logger,
      fields: { domain: host, step: this.opts.step, token },
      message: 'token lookup failed; retrying until storage is back',
    }).then(
      (v) => answer(v ? v.toString('utf8') : null),
      (err: unknown) => {
        const ms = Math.round(performance.now() - started);
        this.opts.logger.error({ domain: host, step: this.opts.step, token, ms, err }, 'token lookup failed: answered 500');
        res.writeHead(500, { 'content-type': 'text/plain' }).end('lookup failed\n');
      },
    );
    return true;
  }
}
