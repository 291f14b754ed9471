// One certificate from order to PEM chain, the way acmez's ObtainCertificate does it:
//   1. the account exists (registered once, then cached)
//   2. new order for every name (profile, ARI `replaces`)
//   3. every authorization valid (authorize.ts: a challenge per solver, cleaned up afterwards)
//   4. finalize with the CSR (at once: an order whose authorizations are valid is ready) and
//      wait for the order to be valid
//   5. download the chain
// One deadline and one AbortSignal cover all steps (attempt.ts); each step logs one JSON line
// with domain, step, ca and ms.
import { silentLogger, type Logger } from '../util/log.ts';
import { Attempt } from './attempt.ts';
import { authorizeAll, type ChallengeSolver } from './authorize.ts';
import type { AcmeAccount } from './plumbing/account.ts';
import { downloadCertificate } from './plumbing/certificate.ts';
import { AcmeError, LocalErrorType } from './plumbing/errors.ts';
import { finalizeOrder, newOrder } from './plumbing/order.ts';

/** What to obtain, and how. */
export interface ObtainOptions {
  domains: string[];
  /** DER PKCS#10 CSR naming every domain. */
  csrDer: Uint8Array;
  /** In preference order; the first whose type an authorization offers is used. */
  solvers: ChallengeSolver[];
  logger?: Logger;
  signal?: AbortSignal;
  /** Overall time limit. Default 90 s. */
  timeoutMs?: number;
  /** Passed to newOrder (left out when the CA does not advertise it). */
  profile?: string;
  /** ARI: the certificate ID this order replaces (only the CA that issued it accepts it). */
  replaces?: string;
}

/** An obtained certificate. */
export interface ObtainResult {
  /** Full chain, leaf first. */
  certificatePem: string;
  orderUrl: string;
  /** The challenge type solved for each authorization that needed one (reused valid ones add nothing). */
  challengeTypes: string[];
}

/**
 * Obtains one certificate for `domains` with `account`. Throws an AcmeError naming the step and
 * the domain that failed (an authorization failure names its identifier); a time-out or the
 * caller's abort ends the attempt at once, after cleaning up presented challenges.
 */
export async function obtainCertificate(account: AcmeAccount, opts: ObtainOptions): Promise<ObtainResult> {
  const primary = opts.domains[0];
  if (primary === undefined) throw new Error('obtainCertificate: no domains (step new-order)');
  if (opts.solvers.length === 0) throw new Error(`obtainCertificate: no challenge solvers (domain ${primary}, step challenge)`);
  const log = opts.logger ?? silentLogger();
  const attempt = new Attempt({ timeoutMs: opts.timeoutMs ?? 90_000, logger: log, ca: account.directory.url, ...(opts.signal ? { signal: opts.signal } : {}) });

  await attempt.step('account', primary, () => account.ensure());
  const orderOpts = { ...(opts.profile !== undefined ? { profile: opts.profile } : {}), ...(opts.replaces !== undefined ? { replaces: opts.replaces } : {}) };
  const order = await attempt.step('new-order', primary, () => newOrder(account, opts.domains, orderOpts));
  if (order.status === 'invalid') {
    const detail = order.error?.detail ?? 'new order is invalid';
    throw new AcmeError({ type: order.error?.type ?? LocalErrorType.protocol, status: order.error?.status ?? 0, detail, step: 'new-order', domain: primary });
  }
  const challengeTypes = await authorizeAll(account, order.authorizations, opts.solvers, attempt, primary);
  // authorizeAll resolved: every authorization is valid, so the order is ready.
  const wait = { signal: attempt.signal, timeoutMs: attempt.remaining(), authorized: true };
  const valid = await attempt.step('finalize', primary, () => finalizeOrder(account, order, opts.csrDer, wait));
  const certificatePem = await attempt.step('download', primary, () => downloadCertificate(account, valid));
  // Debug: the caller logs the outcome at info (the gateway's `issued` line says it all again).
  log.debug({ domain: primary, step: 'obtained', ca: attempt.ca, ms: attempt.elapsed(), domains: opts.domains }, 'acme certificate obtained');
  return { certificatePem, orderUrl: order.url, challengeTypes };
}
