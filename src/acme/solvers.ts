// Challenge solvers and the responders that answer the CA's validation requests. Each
// challenge is kept in memory (fast path) and in storage, so a gateway process sharing the
// storage can answer a validation for an order another process placed.
import { createSecureContext, type SecureContext } from 'node:tls';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../log.ts';
import { keys } from '../storage/layout.ts';
import type { Storage } from '../storage/storage.ts';
import { createTlsAlpnCertificate } from './certs.ts';
import type { ChallengeSolver } from './client.ts';

const TOKEN = /^[A-Za-z0-9_-]{1,256}$/;
export const HTTP01_PREFIX = '/.well-known/acme-challenge/';

export class Http01Solver implements ChallengeSolver {
  readonly type = 'http-01' as const;
  private readonly tokens = new Map<string, string>();

  constructor(
    private readonly storage: Storage,
    private readonly logger: Logger,
  ) {}

  async present(_domain: string, token: string, keyAuthorization: string): Promise<void> {
    this.tokens.set(token, keyAuthorization);
    await this.storage.put(keys.http01Token(token), keyAuthorization);
  }

  async cleanup(_domain: string, token: string, _keyAuthorization?: string): Promise<void> {
    this.tokens.delete(token);
    await this.storage.delete(keys.http01Token(token));
  }

  /** Handles the request if it is an http-01 validation; returns false otherwise. */
  handle(req: IncomingMessage, res: ServerResponse): boolean {
    const url = req.url ?? '';
    if (!url.startsWith(HTTP01_PREFIX)) return false;
    const token = url.slice(HTTP01_PREFIX.length);
    if (!TOKEN.test(token)) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('unknown challenge\n');
      return true;
    }
    // The validator's Host may carry the port; logs name the bare domain.
    const host = (req.headers.host ?? '').replace(/:\d+$/, '').toLowerCase();
    const answer = (keyAuthorization: string | null) => {
      this.logger.info({ domain: host, step: 'http-01-validation', token, found: keyAuthorization !== null, ua: req.headers['user-agent'] }, 'http-01 challenge request');
      if (keyAuthorization === null) res.writeHead(404, { 'content-type': 'text/plain' }).end('unknown challenge\n');
      else res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(keyAuthorization);
    };
    const local = this.tokens.get(token);
    if (local !== undefined) {
      answer(local);
      return true;
    }
    this.storage.get(keys.http01Token(token)).then(
      (v) => answer(v ? v.toString('utf8') : null),
      (err) => {
        this.logger.error({ domain: host, step: 'http-01-validation', token, err }, 'http-01 challenge lookup failed');
        res.writeHead(500, { 'content-type': 'text/plain' }).end('challenge lookup failed\n');
      },
    );
    return true;
  }
}

export class TlsAlpn01Solver implements ChallengeSolver {
  readonly type = 'tls-alpn-01' as const;
  private readonly contexts = new Map<string, SecureContext>();

  constructor(private readonly storage: Storage) {}

  async present(domain: string, _token: string, keyAuthorization: string): Promise<void> {
    const { certPem, keyPem } = await createTlsAlpnCertificate(domain, keyAuthorization);
    this.contexts.set(domain, createSecureContext({ cert: certPem, key: keyPem }));
    await this.storage.put(keys.tlsAlpnKey(domain), keyPem, { private: true });
    await this.storage.put(keys.tlsAlpnCert(domain), certPem);
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
    const cert = await this.storage.get(keys.tlsAlpnCert(domain));
    const key = await this.storage.get(keys.tlsAlpnKey(domain));
    if (!cert || !key) return null;
    return createSecureContext({ cert, key });
  }
}
