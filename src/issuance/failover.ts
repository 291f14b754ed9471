// CA fail-over: the order for a name goes to each configured issuer in turn until one issues.
// An issuer is skipped while its CA asked for a pause (429/503 with Retry-After) or a budget for
// it is spent. After a production failure for this name, validation goes to that issuer's
// staging directory first and back to production only once staging succeeds, so repeated
// failures do not burn production limits. An ARI renewal's `replaces` goes only in the order to
// the CA that issued the replaced certificate (RFC 9773 §5: another CA would refuse the order).
import type { ChallengeSolver } from '../acme/authorize.ts';
import type { IssuedCertificate, IssueOptions } from '../acme/issuer.ts';
import { caPauseOf, isFailedAuthorization, retryAfterOf, type CertificateIssuer, type IssuerChoice } from '../acme/issuers.ts';
import type { CertificateEvents } from './events.ts';
import type { Logger } from '../util/log.ts';
import { StorageError, storageErrorIn } from '../storage/storage.ts';
import type { NameRetryState, RetryState } from './backoff.ts';
import type { RateBudgets } from './budgets.ts';
import { IssuanceSkipped, IssuersFailed, stepOf } from './errors.ts';
import { backoffReason, type NameFailures } from './failures.ts';
import type { RetryStorage } from './store.ts';

/** Why an order is made: a handshake, the renewal scheduler, an admin API call, or a managed certificate at start. */
export type IssuanceReason = 'on-demand' | 'renewal' | 'admin' | 'managed';

/** The certificate an ARI renewal replaces (RFC 9773): its certificate ID and the CA that issued it. */
export interface ReplacedCertificate {
  /** The ARI certificate ID, sent as the new order's `replaces`. */
  certId: string;
  /** Id of the CA that issued it (meta.json `ca`): only an order to this CA may name it. */
  ca: string;
}

/**
 * How orders are made: a renewal's profile and the certificate an ARI renewal replaces; for an
 * on-demand order, the client address whose share of the budgets it spends; for a managed
 * certificate, all its names (the domain first) and the solvers that can validate them.
 */
export interface OrderOptions {
  profile?: string;
  replaces?: ReplacedCertificate;
  clientIp?: string | undefined;
  names?: string[];
  solvers?: ChallengeSolver[];
}

/** The names and solvers of `orderOptions` as IssueOptions (the issuer's defaults when unset). */
function orderScope({ names, solvers }: OrderOptions): Pick<IssueOptions, 'names' | 'solvers'> {
  return { ...(names ? { names } : {}), ...(solvers ? { solvers } : {}) };
}

/** A certificate from one issuer, and the certificate its order named in `replaces`, if any. */
export type IssuedFrom = IssuedCertificate & { from: CertificateIssuer; replaced?: ReplacedCertificate };

/** What fail-over needs: the issuers in order, the shared retry state and the budgets. */
export interface FailoverOptions {
  issuers: IssuerChoice[];
  retry: RetryState;
  failures: NameFailures;
  budgets?: RateBudgets | undefined;
  events: CertificateEvents;
  retryStorage: RetryStorage;
  logger: Logger;
}

/** What the issuers said so far in one attempt. */
interface Tally {
  failedCas: string[];
  recoveredCas: string[];
  problems: string[];
  lastStep: string;
  retryAfterMs: number | undefined;
}

/** Orders a certificate from the first issuer that will issue it (see the header). */
export class IssuerFailover {
  constructor(private readonly opts: FailoverOptions) {}

  /**
   * Issues `domain` from the first willing issuer. Call with the name's lock held. Rejects with
   * IssuanceSkipped when no CA was asked (name in backoff, CAs paused, budgets spent), with
   * IssuersFailed when every CA asked failed, and with StorageError when our storage failed.
   */
  async issue(domain: string, reason: IssuanceReason, orderOptions: OrderOptions): Promise<IssuedFrom> {
    const state = await this.opts.retryStorage(domain, 'retry-state', () => this.opts.retry.get(domain));
    // Another instance may have failed for the name while we waited for the lock.
    if (reason !== 'admin' && state && (state.retryAt === null || state.retryAt > Date.now())) {
      this.opts.failures.remember(domain, state);
      throw new IssuanceSkipped(`no order for ${domain}: ${backoffReason(state) ?? 'in backoff'}`);
    }
    const tally: Tally = { failedCas: [], recoveredCas: [], problems: [], lastStep: 'issue', retryAfterMs: undefined };
    for (const choice of this.opts.issuers) {
      if (await this.paused(domain, choice.production.ca, tally)) continue;
      if (!(await this.stagingPasses(domain, choice, state, tally, orderOptions))) continue;
      const issued = await this.order(domain, choice.production, reason, orderOptions, tally);
      if (issued) return issued;
    }
    const message = `no certificate for ${domain}: ${tally.problems.join('; ')}`;
    if (tally.failedCas.length === 0) throw new IssuanceSkipped(message);
    throw new IssuersFailed(message, tally.lastStep, tally.failedCas, tally.recoveredCas, tally.retryAfterMs);
  }

  /** Whether the CA asked for a pause that still runs (noted in the tally). */
  private async paused(domain: string, ca: string, tally: Tally): Promise<boolean> {
    const pause = await this.opts.retryStorage(domain, 'ca-pause', () => this.opts.retry.caPause(ca));
    if (!pause) return false;
    tally.problems.push(`${ca}: paused until ${new Date(pause.until).toISOString()} (${pause.reason})`);
    this.opts.logger.info({ domain, step: 'ca-pause', ca, until: new Date(pause.until).toISOString() }, 'CA paused: not ordering from it');
    return true;
  }

  /** After a production failure for the name: staging must validate first. False: production stays on hold. */
  private async stagingPasses(domain: string, { production, staging }: IssuerChoice, state: NameRetryState | null, tally: Tally, orderOptions: OrderOptions): Promise<boolean> {
    const ca = production.ca;
    if (!staging || !state?.stagingFirst.includes(ca)) return true;
    const { logger } = this.opts;
    try {
      logger.info({ domain, step: 'staging-validate', ca, staging: staging.directory }, 'production failed before: validating against staging first');
      await staging.issue(domain, orderScope(orderOptions));
      tally.recoveredCas.push(ca);
      logger.info({ domain, step: 'staging-validate', ca, staging: staging.directory }, 'staging succeeded: back to production');
      return true;
    } catch (err) {
      tally.failedCas.push(ca); // still failing: production stays on hold for this name
      tally.problems.push(`${ca} (staging ${staging.directory}): ${(err as Error).message}`);
      tally.lastStep = stepOf(err, 'staging-validate');
      tally.retryAfterMs = maxDefined(tally.retryAfterMs, retryAfterOf(err));
      return false;
    }
  }

  /** One production order within the budgets; null when skipped or failed (noted in the tally). */
  private async order(domain: string, production: CertificateIssuer, reason: IssuanceReason, orderOptions: OrderOptions, tally: Tally): Promise<IssuedFrom | null> {
    const ca = production.ca;
    const replaced = orderOptions.replaces?.ca === ca ? orderOptions.replaces : undefined;
    if (orderOptions.replaces && !replaced) {
      this.opts.logger.debug({ domain, step: 'new-order', ca, replacedCa: orderOptions.replaces.ca }, 'certificate issued by another CA: plain new order, no `replaces`');
    }
    const issueOptions: IssueOptions = {
      ...(orderOptions.profile !== undefined ? { profile: orderOptions.profile } : {}),
      ...(replaced ? { replaces: replaced.certId } : {}),
      ...orderScope(orderOptions),
    };
    const refusal = await this.opts.budgets?.beginOrder(ca, domain, { exempt: replaced !== undefined, client: orderOptions.clientIp });
    if (refusal) {
      tally.problems.push(`${ca}: rate-limit budget ${refusal.budget} spent until ${refusal.freesAt.toISOString()}`);
      return null;
    }
    this.opts.events.emit({ type: 'issuance-started', domain, ca, reason });
    try {
      const issued = await production.issue(domain, issueOptions);
      return { ...issued, from: production, ...(replaced ? { replaced } : {}) };
    } catch (err) {
      await this.failedAt(domain, ca, err, tally);
      return null;
    }
  }

  /** Notes a CA's failure: its pause, the failed authorization in the budgets. Storage failures are rethrown. */
  private async failedAt(domain: string, ca: string, err: unknown, tally: Tally): Promise<void> {
    const { logger, budgets } = this.opts;
    // Our storage, not the CA: no backoff. A solver's failed write reaches us wrapped in the
    // ACME step's error, which names the domain and the step; keep that message.
    const storageFailure = storageErrorIn(err);
    if (storageFailure === err) throw err;
    if (storageFailure) throw new StorageError((err as Error).message, storageFailure.key, storageFailure.step, { cause: err });
    tally.failedCas.push(ca);
    tally.problems.push(`${ca}: ${(err as Error).message}`);
    tally.lastStep = stepOf(err, 'issue');
    const caPause = caPauseOf(err);
    if (caPause) await this.opts.retry.pauseCa(ca, caPause.untilMs, caPause.reason).catch((e: unknown) => logger.warn({ domain, step: 'ca-pause', ca, err: e }, 'could not record the CA pause'));
    else tally.retryAfterMs = maxDefined(tally.retryAfterMs, retryAfterOf(err));
    if (isFailedAuthorization(err)) await budgets?.recordFailedAuthorization(ca, domain).catch((e: unknown) => logger.warn({ domain, step: 'budget', ca, err: e }, 'could not count the failed authorization'));
    if (this.opts.issuers.length > 1) logger.warn({ domain, step: tally.lastStep, ca, err }, 'issuer failed; trying the next one');
  }
}

function maxDefined(a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined ? b : b === undefined ? a : Math.max(a, b);
}
