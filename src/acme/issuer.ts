// One ACME CA as an issuer: the one object the rest of the gateway talks to about that CA.
//   - issue(): a domain becomes a certificate chain + private key (obtain.ts)
//   - revokeCertificate(): with the account that ordered it
//   - renewalWindow(): the CA's ARI window for a certificate it issued (no account needed)
// It keeps one transport (connection and nonce pool) and directory for the CA, and the account:
// created once, stored, reused by every process on the same storage.
import { createPrivateKey, type KeyObject } from 'node:crypto';
import type { AcmeConfig } from '../config/schema.ts';
import type { Logger } from '../util/log.ts';
import { caIdFromDirectory, keys } from '../storage/keys.ts';
import type { Storage } from '../storage/storage.ts';
import { Lazy } from '../util/lazy.ts';
import { checkSolversBeforeOrder, type ChallengeSolver } from './authorize.ts';
import { solversForOrder } from './dns01.ts';
import { obtainCertificate } from './obtain.ts';
import { AcmeAccount } from './plumbing/account.ts';
import { fetchRenewalWindow, type RenewalWindow } from './plumbing/ari.ts';
import { revokeCertificate } from './plumbing/certificate.ts';
import { Directory } from './plumbing/directory.ts';
import { AcmeTransport } from './plumbing/transport.ts';
import { createCsr, generateAccountKey, generateKeyPair, type KeyType } from './x509.ts';

/** The `acme` settings every issuer shares, as parsed (`timeout`: ms for one whole order). */
export type SharedAcmeConfig = Pick<AcmeConfig, 'email' | 'keyType' | 'timeout' | 'profile'>;

/** One CA: an `acme.issuers[]` entry as parsed, but with its trusted roots read (PEM contents, not paths). */
export interface CaSpec {
  directory: string;
  /** PEM contents of extra roots trusted for the CA's own TLS endpoint. */
  trustedRoots: string[];
  eab?: { kid: string; hmac: string } | undefined;
}

/** What an issuer works with besides its config: the challenge solvers (in preference order), storage, log. */
export interface AcmeIssuerDeps {
  /** acme.challenges' solvers; dns-01 among them only when listed there. */
  solvers: ChallengeSolver[];
  /** The dns-01 solver when acme.dns is configured: wildcard orders use it alone (solversForOrder). */
  dns01?: ChallengeSolver | undefined;
  storage: Storage;
  logger: Logger;
}

/** Per-order choices of issue(). */
export interface IssueOptions {
  /** ACME profile (e.g. "tlsserver", "shortlived") for the new order. */
  profile?: string;
  /** ARI: the certificate ID (RFC 9773) this order replaces. */
  replaces?: string;
  /** Every name of the certificate, one order for all (default: the domain alone); the domain is the first. */
  names?: string[];
  /** The challenge solvers of this order, in preference order (default: the issuer's, `acme.challenges`). */
  solvers?: ChallengeSolver[];
}

/** A new certificate and its private key (PKCS#8 PEM: store it as private). */
export interface IssuedCertificate {
  /** Full chain, leaf first. */
  certPem: string;
  keyPem: string;
  keyType: KeyType;
  /** The challenge types solved, comma-joined ('' when every authorization was reused). */
  challenge: string;
  orderUrl: string;
}

interface StoredAccount {
  url: string;
  directory: string;
  email?: string;
  createdAt: string;
}

/**
 * An ACME CA as an issuer. Constructing it sends nothing; the account is loaded from storage or
 * registered at the first issue()/revokeCertificate() (a failure there is retried next time).
 */
export class AcmeIssuer {
  /** The CA id certificates from this issuer are stored under (storage/keys.ts). */
  readonly ca: string;
  readonly directory: string;
  private readonly endpoint: Directory;
  /** Registered once per CA and reused across restarts and processes; a failure is retried at the next use. */
  private readonly account = new Lazy(() => this.loadOrCreateAccount());

  /** `acme`: the section as parsed (acme.profile is every order's default profile); `spec`: this CA. */
  constructor(
    private readonly acme: SharedAcmeConfig,
    private readonly spec: CaSpec,
    private readonly deps: AcmeIssuerDeps,
  ) {
    this.directory = spec.directory;
    this.ca = caIdFromDirectory(spec.directory);
    this.endpoint = new Directory(new AcmeTransport({ directoryUrl: spec.directory, trustedRoots: spec.trustedRoots, logger: deps.logger }));
  }

  /**
   * A new key and certificate for `domain` (and `opts.names`, one order for all); throws the
   * AcmeError of the step that failed.
   */
  async issue(domain: string, opts: IssueOptions = {}): Promise<IssuedCertificate> {
    const names = opts.names ?? [domain];
    // Before the account or an order: a wildcard without dns-01 could only fail at the CA.
    const solvers = opts.solvers ?? solversForOrder(names, this.deps.solvers, this.deps.dns01);
    // Still before the order: a DNS host that refuses our key would only cost a newOrder.
    await checkSolversBeforeOrder(solvers, domain);
    const account = await this.account.get();
    const started = performance.now();
    const { privateKeyPem, keyPair } = await generateKeyPair(this.acme.keyType);
    const csrDer = await createCsr(names, keyPair, this.acme.keyType);
    const result = await obtainCertificate(account, {
      domains: names,
      csrDer,
      solvers,
      logger: this.deps.logger,
      timeoutMs: this.acme.timeout,
      ...((opts.profile ?? this.acme.profile) !== undefined ? { profile: opts.profile ?? this.acme.profile } : {}),
      ...(opts.replaces !== undefined ? { replaces: opts.replaces } : {}),
    });
    // Debug: the manager's `issued` line (stored, with ca, challenge and ms) follows at info.
    this.deps.logger.debug(
      { domain, step: 'certificate-obtained', ca: this.ca, challenge: result.challengeTypes.join(','), ms: Math.round(performance.now() - started) },
      'certificate obtained',
    );
    return { certPem: result.certificatePem, keyPem: privateKeyPem, keyType: this.acme.keyType, challenge: result.challengeTypes.join(','), orderUrl: result.orderUrl };
  }

  /** Revokes an issued certificate at this CA with the account that ordered it. */
  async revokeCertificate(domain: string, certPem: string, reason?: number): Promise<void> {
    const account = await this.account.get();
    const started = performance.now();
    await revokeCertificate(account, certPem, { domain, ...(reason !== undefined ? { reason } : {}) });
    this.deps.logger.info({ domain, step: 'revoked', ca: this.ca, ms: Math.round(performance.now() - started) }, 'certificate revoked');
  }

  /**
   * The CA's ARI window for a certificate it issued (RFC 9773), or null when it offers none.
   * An unauthenticated request: no account is loaded or registered for it.
   */
  renewalWindow(certId: string, domain?: string): Promise<RenewalWindow | null> {
    return fetchRenewalWindow(this.endpoint, certId, domain);
  }

  /** Closes the connection pool to the CA. */
  async close(): Promise<void> {
    await this.endpoint.transport.close();
  }

  private async loadOrCreateAccount(): Promise<AcmeAccount> {
    const { storage, logger } = this.deps;
    const { email } = this.acme;
    const existing = await this.readAccount();
    if (existing) return existing;
    // Two processes starting together must not register two accounts.
    const lock = await storage.lock(keys.accountLock(this.ca), { ttlMs: 60_000, waitMs: 120_000 });
    try {
      const raced = await this.readAccount();
      if (raced) return raced;
      const started = performance.now();
      const accountKey = generateAccountKey();
      const account = this.newAccount(accountKey);
      const url = await account.ensure();
      await storage.put(keys.accountKey(this.ca, email), accountKey.export({ type: 'pkcs8', format: 'pem' }), { private: true });
      const stored: StoredAccount = { url, directory: this.directory, ...(email ? { email } : {}), createdAt: new Date().toISOString() };
      await storage.put(keys.account(this.ca, email), JSON.stringify(stored, null, 2) + '\n');
      logger.info({ step: 'account-created', ca: this.ca, account: url, ms: Math.round(performance.now() - started) }, 'ACME account registered');
      return account;
    } finally {
      await lock.release();
    }
  }

  private async readAccount(): Promise<AcmeAccount | null> {
    const { storage } = this.deps;
    const { email } = this.acme;
    const keyPem = await storage.get(keys.accountKey(this.ca, email));
    const accountJson = await storage.get(keys.account(this.ca, email));
    if (!keyPem || !accountJson) return null;
    const account = JSON.parse(accountJson.toString('utf8')) as StoredAccount;
    this.deps.logger.info({ step: 'account-loaded', ca: this.ca, account: account.url }, 'ACME account reused');
    return this.newAccount(createPrivateKey(keyPem), account.url);
  }

  private newAccount(accountKey: KeyObject, accountUrl?: string): AcmeAccount {
    const { email } = this.acme;
    const { eab } = this.spec;
    return new AcmeAccount(this.endpoint, {
      accountKey,
      ...(accountUrl ? { accountUrl } : {}),
      ...(email ? { email } : {}),
      ...(eab ? { eab: { kid: eab.kid, hmacKey: eab.hmac } } : {}),
    });
  }
}
