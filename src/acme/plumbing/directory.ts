// The directory (RFC 8555 §7.1.1): the one URL configured per CA, naming every other resource.
// Fetched at the first request that needs it and kept; a failed fetch is forgotten, so the next
// request asks again instead of repeating the failure.
import { Lazy } from '../../util/lazy.ts';
import { problemError, protocolError, requireJson, type AcmeTransport } from './transport.ts';

/** The directory object. newNonce, newAccount and newOrder are checked to be present. */
export interface AcmeDirectory {
  newNonce: string;
  newAccount: string;
  newOrder: string;
  revokeCert?: string;
  keyChange?: string;
  newAuthz?: string;
  /** RFC 9773 (ARI); absent when the CA does not offer renewal information. */
  renewalInfo?: string;
  meta?: {
    termsOfService?: string;
    website?: string;
    caaIdentities?: string[];
    externalAccountRequired?: boolean;
    /** Profiles the CA accepts in newOrder, by name. */
    profiles?: Record<string, string>;
  };
  [key: string]: unknown;
}

/**
 * One CA's directory over its transport: `get()` fetches it once and shares the answer with every
 * caller (concurrent callers share one request). Unauthenticated: needs no account.
 */
export class Directory {
  private readonly cached = new Lazy(() => this.fetch());

  constructor(readonly transport: AcmeTransport) {}

  /** The directory URL (also the base of relative Location headers). */
  get url(): string {
    return this.transport.directoryUrl;
  }

  /** The directory; throws an AcmeError with step 'directory' when it cannot be fetched or lacks a required URL. */
  get(): Promise<AcmeDirectory> {
    return this.cached.get();
  }

  /** The newNonce URL, for AcmeTransport.takeNonce. */
  readonly newNonceUrl = async (): Promise<string> => (await this.get()).newNonce;

  private async fetch(): Promise<AcmeDirectory> {
    const ctx = { step: 'directory' };
    const res = await this.transport.request('GET', this.url, ctx);
    if (res.status !== 200) throw problemError(res, ctx);
    const dir = requireJson<AcmeDirectory>(res, ctx);
    if (typeof dir.newNonce !== 'string' || typeof dir.newAccount !== 'string' || typeof dir.newOrder !== 'string') {
      throw protocolError('directory lacks newNonce/newAccount/newOrder', ctx, res.status);
    }
    return dir;
  }
}
