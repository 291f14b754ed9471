// One ACME CA as an issuer: keeps the account (created once, stored, reused by every process
// on the same storage) and turns a domain into a certificate chain + private key.
import { createPrivateKey, type KeyObject } from 'node:crypto';
import type { Logger } from '../log.ts';
import { caIdFromDirectory, keys } from '../storage/layout.ts';
import type { Storage } from '../storage/storage.ts';
import { createCsr, generateAccountKey, generateKeyPair, type KeyType } from './certs.ts';
import { AcmeClient, obtainCertificate, type ChallengeSolver } from './client.ts';

export interface AcmeIssuerOptions {
  directory: string;
  email?: string;
  /** PEM contents of extra roots trusted for the CA's own TLS endpoint. */
  trustedRoots: string[];
  eab?: { kid: string; hmac: string };
  keyType: KeyType;
  /** In preference order. */
  solvers: ChallengeSolver[];
  timeoutMs: number;
  storage: Storage;
  logger: Logger;
  /** acme.profile: default profile of every order (the client drops it when not advertised). */
  profile?: string;
}

export interface IssueOptions {
  /** ACME profile (e.g. "tlsserver", "shortlived") for the new order. */
  profile?: string;
  /** ARI: the certificate ID (RFC 9773) this order replaces. */
  replaces?: string;
}

export interface IssuedCertificate {
  certPem: string;
  keyPem: string;
  keyType: KeyType;
  challenge: string;
  orderUrl: string;
}

interface StoredAccount {
  url: string;
  directory: string;
  email?: string;
  createdAt: string;
}

export class AcmeIssuer {
  readonly ca: string;
  readonly directory: string;
  private clientPromise: Promise<AcmeClient> | undefined;

  constructor(private readonly opts: AcmeIssuerOptions) {
    this.directory = opts.directory;
    this.ca = caIdFromDirectory(opts.directory);
  }

  async issue(domain: string, opts: IssueOptions = {}): Promise<IssuedCertificate> {
    const client = await this.client();
    const started = performance.now();
    const { privateKeyPem, keyPair } = await generateKeyPair(this.opts.keyType);
    const csrDer = await createCsr([domain], keyPair, this.opts.keyType);
    const result = await obtainCertificate(client, {
      domains: [domain],
      csrDer,
      solvers: this.opts.solvers,
      logger: this.opts.logger,
      timeoutMs: this.opts.timeoutMs,
      ...((opts.profile ?? this.opts.profile) !== undefined ? { profile: opts.profile ?? this.opts.profile } : {}),
      ...(opts.replaces !== undefined ? { replaces: opts.replaces } : {}),
    });
    this.opts.logger.info(
      { domain, step: 'certificate-obtained', ca: this.ca, challenge: result.challengeTypes.join(','), ms: Math.round(performance.now() - started) },
      'certificate obtained',
    );
    return { certPem: result.certificatePem, keyPem: privateKeyPem, keyType: this.opts.keyType, challenge: result.challengeTypes.join(','), orderUrl: result.orderUrl };
  }

  /** Revokes an issued certificate at this CA with the account that ordered it. */
  async revokeCertificate(domain: string, certPem: string, reason?: number): Promise<void> {
    const client = await this.client();
    const started = performance.now();
    await client.revokeCertificate(certPem, { domain, ...(reason !== undefined ? { reason } : {}) });
    this.opts.logger.info({ domain, step: 'revoked', ca: this.ca, ms: Math.round(performance.now() - started) }, 'certificate revoked');
  }

  /** The account client, registered once per CA and reused across restarts and processes. */
  private client(): Promise<AcmeClient> {
    this.clientPromise ??= this.loadOrCreateAccount().catch((err) => {
      this.clientPromise = undefined; // try again on the next issuance
      throw err;
    });
    return this.clientPromise;
  }

  private async loadOrCreateAccount(): Promise<AcmeClient> {
    const { storage, logger, email } = this.opts;
    const existing = await this.readAccount();
    if (existing) return existing;
    // Two processes starting together must not register two accounts.
    const lock = await storage.lock(keys.accountLock(this.ca), { ttlMs: 60_000, waitMs: 120_000 });
    try {
      const raced = await this.readAccount();
      if (raced) return raced;
      const started = performance.now();
      const accountKey = generateAccountKey();
      const client = this.newClient(accountKey);
      const url = await client.ensureAccount();
      await storage.put(keys.accountKey(this.ca, email), accountKey.export({ type: 'pkcs8', format: 'pem' }), { private: true });
      const account: StoredAccount = { url, directory: this.directory, ...(email ? { email } : {}), createdAt: new Date().toISOString() };
      await storage.put(keys.account(this.ca, email), JSON.stringify(account, null, 2) + '\n');
      logger.info({ step: 'account-created', ca: this.ca, account: url, ms: Math.round(performance.now() - started) }, 'ACME account registered');
      return client;
    } finally {
      await lock.release();
    }
  }

  private async readAccount(): Promise<AcmeClient | null> {
    const { storage, email } = this.opts;
    const keyPem = await storage.get(keys.accountKey(this.ca, email));
    const accountJson = await storage.get(keys.account(this.ca, email));
    if (!keyPem || !accountJson) return null;
    const account = JSON.parse(accountJson.toString('utf8')) as StoredAccount;
    this.opts.logger.info({ step: 'account-loaded', ca: this.ca, account: account.url }, 'ACME account reused');
    return this.newClient(createPrivateKey(keyPem), account.url);
  }

  private newClient(accountKey: KeyObject, accountUrl?: string): AcmeClient {
    const { email, eab, trustedRoots, logger } = this.opts;
    return new AcmeClient({
      directoryUrl: this.directory,
      accountKey,
      ...(accountUrl ? { accountUrl } : {}),
      ...(email ? { email } : {}),
      trustedRoots,
      ...(eab ? { eab: { kid: eab.kid, hmacKey: eab.hmac } } : {}),
      logger,
    });
  }
}
