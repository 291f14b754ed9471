// The account (RFC 8555 §7.3): the key every request after the directory is signed with, and the
// account URL the CA gave it (the JWS `kid`).
//
//   1. ensure()  newAccount once per key (the CA answers with the existing account for a known
//                key), with External Account Binding when the CA requires it (§7.3.4)
//   2. post()    a signed request as this account; when the CA no longer knows the account
//                (accountDoesNotExist, e.g. a restarted test CA) it registers again, once
//   3. keyAuthorization()  what every challenge answers with (§8.1)
import type { KeyObject } from 'node:crypto';
import { Lazy } from '../../util/lazy.ts';
import { isAcmeError } from './errors.ts';
import { Directory } from './directory.ts';
import { jwkThumbprint, publicJwk, signExternalAccountBinding } from './jws.ts';
import { AcmeTransport, requireLocation, type AcmeResponse, type RequestContext, type TransportOptions } from './transport.ts';

/** Who the account is. */
export interface AccountOptions {
  /** ECDSA P-256 private key (ES256). P-384/P-521/RSA keys also work. */
  accountKey: KeyObject;
  /** Known account URL (kid); skips newAccount. */
  accountUrl?: string;
  /** Contact address sent with newAccount. */
  email?: string;
  /** External Account Binding; hmacKey is base64url. */
  eab?: { kid: string; hmacKey: string };
}

/** A transport, its directory and an account in one go (AcmeAccount.connect). */
export type ConnectOptions = TransportOptions & AccountOptions;

/**
 * One ACME account at one CA. Creating it sends nothing; the first signed request registers it
 * (or finds it) unless `accountUrl` was given. Resource functions (order.ts, authorization.ts,
 * certificate.ts) take it as their first argument.
 */
export class AcmeAccount {
  private readonly key: KeyObject;
  private readonly email: string | undefined;
  private readonly eab: { kid: string; hmacKey: string } | undefined;
  private readonly thumbprint: string;
  private readonly registered = new Lazy(() => this.newAccount());

  constructor(
    readonly directory: Directory,
    opts: AccountOptions,
  ) {
    this.key = opts.accountKey;
    this.email = opts.email;
    this.eab = opts.eab;
    this.thumbprint = jwkThumbprint(publicJwk(this.key));
    if (opts.accountUrl !== undefined) this.registered.set(Promise.resolve(opts.accountUrl));
  }

  /** A new transport and directory with this account on them; the caller closes `transport`. */
  static connect(opts: ConnectOptions): AcmeAccount {
    return new AcmeAccount(new Directory(new AcmeTransport(opts)), opts);
  }

  /** The transport this account's requests go through. */
  get transport(): AcmeTransport {
    return this.directory.transport;
  }

  /** The account URL when already known (no request). */
  async knownUrl(): Promise<string | undefined> {
    return this.registered.peek()?.catch(() => undefined);
  }

  /** Registers (or finds) the account for this key; returns its URL. Cached; a failure is not. */
  ensure(): Promise<string> {
    return this.registered.get();
  }

  /** `token.thumbprint(accountKey)`: what a challenge must serve (http-01) or hash (tls-alpn-01, dns-01). */
  keyAuthorization(token: string): string {
    return `${token}.${this.thumbprint}`;
  }

  /**
   * A request signed as this account (`payload` undefined = POST-as-GET). Status >= 400 throws an
   * AcmeError; badNonce is retried by the transport, a forgotten account re-registered once.
   */
  async post(url: string, payload: unknown, ctx: RequestContext, opts: { accept?: string; signal?: AbortSignal } = {}): Promise<AcmeResponse> {
    const signer = async (): Promise<{ key: KeyObject; kid: string }> => ({ key: this.key, kid: await this.ensure() });
    try {
      return await this.transport.signedPost(url, payload, ctx, signer, this.directory.newNonceUrl, opts);
    } catch (err) {
      if (!isAcmeError(err, 'accountDoesNotExist')) throw err;
      this.transport.log.debug({ step: ctx.step, domain: ctx.domain }, 'acme account does not exist, registering again');
      this.registered.set(undefined);
      return this.transport.signedPost(url, payload, ctx, signer, this.directory.newNonceUrl, opts);
    }
  }

  private async newAccount(): Promise<string> {
    const started = performance.now();
    const ctx = { step: 'new-account' };
    const dir = await this.directory.get();
    const payload: Record<string, unknown> = { termsOfServiceAgreed: true };
    if (this.email) payload.contact = [`mailto:${this.email}`];
    if (this.eab) {
      payload.externalAccountBinding = signExternalAccountBinding({ kid: this.eab.kid, hmacKey: this.eab.hmacKey, url: dir.newAccount, accountKey: this.key });
    }
    // newAccount is signed with the public key itself (`jwk`): there is no account URL yet.
    const res = await this.transport.signedPost(dir.newAccount, payload, ctx, async () => ({ key: this.key }), this.directory.newNonceUrl);
    const url = requireLocation(res, ctx, this.directory.url);
    this.transport.log.debug({ step: 'new-account', url, created: res.status === 201, ms: Math.round(performance.now() - started) }, 'acme account');
    return url;
  }
}
