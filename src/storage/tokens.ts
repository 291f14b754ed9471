// Short-lived tokens answered over plain HTTP by every process on one storage: the value is kept
// in memory (fast path) and in storage, so the process that did not create a token still answers
// it. Serves the ACME http-01 responder and the pre-flight self-check probe.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../log.ts';
import type { Storage } from './storage.ts';

export interface StoredTokensOptions {
  storage: Storage;
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
}

export class StoredTokens {
  private readonly local = new Map<string, string>();

  constructor(private readonly opts: StoredTokensOptions) {}

  async set(token: string, value: string): Promise<void> {
    this.local.set(token, value);
    await this.opts.storage.put(this.opts.keyOf(token), value);
  }

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
    this.opts.storage.get(this.opts.keyOf(token)).then(
      (v) => answer(v ? v.toString('utf8') : null),
      (err: unknown) => {
        this.opts.logger.error({ domain: host, step: this.opts.step, token, err }, 'token lookup failed');
        res.writeHead(500, { 'content-type': 'text/plain' }).end('lookup failed\n');
      },
    );
    return true;
  }
}
