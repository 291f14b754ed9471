// Authorizing every name of an order (RFC 8555 §7.5), all at once:
//   1. fetch each authorization; a valid one (reused) needs nothing, anything but pending fails
//   2. pick the first solver, in preference order, whose challenge type the CA offers
//   3. present the challenge (solver), tell the CA to validate, wait for the authorization (the
//      first poll one poll interval later: at once it would find it pending)
//   4. one failure ends the others at once (Attempt.failFast): the order is lost anyway
//   5. clean up every presented challenge, whatever happened
import type { AcmeAccount } from './plumbing/account.ts';
import { getAuthorization, respondToChallenge, waitForAuthorization, type AcmeAuthorization, type AcmeChallenge } from './plumbing/authorization.ts';
import { AcmeError, LocalErrorType } from './plumbing/errors.ts';
import type { Attempt } from './attempt.ts';
import { DnsProviderError } from './dns/provider.ts';

/** The challenge types a solver can answer. */
export type ChallengeType = 'http-01' | 'tls-alpn-01' | 'dns-01';

/** Answers one challenge type. present() and cleanup() get the identifier without any `*.`. */
export interface ChallengeSolver {
  readonly type: ChallengeType;
  /**
   * Makes the challenge answerable (http-01 file, tls-alpn-01 cert, dns-01 TXT record). `signal`
   * aborts when the order's attempt ends, so a long wait (dns-01 propagation) stops with it.
   */
  present(domain: string, token: string, keyAuthorization: string, signal?: AbortSignal): Promise<void>;
  /** Removes what present() set up. Always called, even after failures. */
  cleanup(domain: string, token: string, keyAuthorization: string): Promise<void>;
  /**
   * Called before an order that may use this solver is placed; throws to refuse the order, so
   * nothing is spent at the CA when the challenge could not be answered anyway (dns-01: the DNS
   * host's credentials and reachability).
   */
  beforeOrder?(): Promise<void>;
}

/**
 * Runs every solver's beforeOrder; the first refusal becomes an AcmeError that keeps a DNS
 * host's own step (`check`) and names `domain`.
 */
export async function checkSolversBeforeOrder(solvers: readonly ChallengeSolver[], domain: string): Promise<void> {
  for (const solver of solvers) {
    try {
      await solver.beforeOrder?.();
    } catch (err) {
      const detail = `${solver.type} solver refused before the order: ${err instanceof Error ? err.message : String(err)}`;
      throw new AcmeError({ type: SOLVER_ERROR, status: 0, detail, step: err instanceof DnsProviderError ? err.step : 'challenge', domain, cause: err });
    }
  }
}

/** Local problem type of a solver's present() failure. */
export const SOLVER_ERROR = 'urn:certgate:error:solver';

interface Presented {
  solver: ChallengeSolver;
  domain: string;
  token: string;
  keyAuth: string;
}

/**
 * Makes every authorization of an order valid, or throws the first failure (an AcmeError naming
 * the identifier and the step). Returns the challenge type solved per authorization, in order;
 * reused valid authorizations add nothing. Every presented challenge is cleaned up before return.
 */
export async function authorizeAll(account: AcmeAccount, authorizationUrls: string[], solvers: ChallengeSolver[], attempt: Attempt, primary: string): Promise<string[]> {
  const presented: Presented[] = [];
  const types: (string | undefined)[] = new Array<string | undefined>(authorizationUrls.length);
  try {
    let firstError: unknown;
    await Promise.all(
      authorizationUrls.map(async (url, i) => {
        try {
          types[i] = await authorize(account, url, solvers, attempt, primary, presented);
        } catch (err) {
          firstError ??= err;
          attempt.failFast(err);
        }
      }),
    );
    if (firstError !== undefined) throw firstError;
  } finally {
    await Promise.all(presented.map((p) => cleanup(p, attempt)));
  }
  return types.filter((t): t is string => t !== undefined);
}

/** One authorization valid; returns the challenge type solved, undefined when it was already valid. */
async function authorize(account: AcmeAccount, url: string, solvers: ChallengeSolver[], attempt: Attempt, primary: string, presented: Presented[]): Promise<string | undefined> {
  const t0 = performance.now();
  const authz = await attempt.race(getAuthorization(account, url), 'authorization', primary).catch((err: unknown) => {
    throw err instanceof AcmeError && err.domain === undefined ? err.withContext({ domain: primary }) : err;
  });
  // Logs and errors name the wildcard; solvers get the identifier itself (dns-01 answers at
  // _acme-challenge.<identifier> for both).
  const domain = (authz.wildcard ? '*.' : '') + authz.identifier.value;
  if (authz.status === 'valid') {
    attempt.log.info({ domain, step: 'authorization', ca: attempt.ca, ms: Math.round(performance.now() - t0), totalMs: attempt.elapsed(), reused: true }, 'acme authorization already valid');
    return undefined;
  }
  if (authz.status !== 'pending') {
    throw new AcmeError({ type: LocalErrorType.protocol, status: 0, detail: `authorization is ${authz.status}`, step: 'authorization', domain });
  }
  const { solver, challenge } = chooseSolver(authz, solvers, domain);
  const p: Presented = { solver, domain: authz.identifier.value, token: challenge.token, keyAuth: account.keyAuthorization(challenge.token) };
  presented.push(p);
  const extra = { challenge: solver.type };
  await attempt.step('challenge', domain, () => present(account, p, challenge, domain, attempt.signal), extra);
  // The CA was just told to validate: a request at once would find the authorization pending.
  const wait = { signal: attempt.signal, timeoutMs: attempt.remaining(), delayFirst: true };
  await attempt.step('authorization', domain, () => waitForAuthorization(account, url, wait), extra);
  return solver.type;
}

/** The first solver, in preference order, whose challenge type the authorization offers. */
function chooseSolver(authz: AcmeAuthorization, solvers: ChallengeSolver[], domain: string): { solver: ChallengeSolver; challenge: AcmeChallenge } {
  for (const solver of solvers) {
    const challenge = authz.challenges.find((c) => c.type === solver.type);
    if (challenge) return { solver, challenge };
  }
  throw new AcmeError({
    type: LocalErrorType.noSolver,
    status: 0,
    detail: `no solver for offered challenges ${authz.challenges.map((c) => c.type).join(', ')} (have ${solvers.map((s) => s.type).join(', ')})`,
    step: 'challenge',
    domain,
  });
}

/** The solver presents; then the CA is asked to validate (unless it already is validating). */
async function present(account: AcmeAccount, p: Presented, challenge: AcmeChallenge, domain: string, signal: AbortSignal): Promise<void> {
  try {
    await p.solver.present(p.domain, p.token, p.keyAuth, signal);
  } catch (err) {
    const detail = `${p.solver.type} solver could not present the challenge: ${err instanceof Error ? err.message : String(err)}`;
    // A DNS host's failure keeps its own step (zone, present, propagation): the admin status and
    // the log then say which part of dns-01 failed, not just "challenge".
    const step = err instanceof DnsProviderError ? err.step : 'challenge';
    throw new AcmeError({ type: SOLVER_ERROR, status: 0, detail, step, domain, cause: err });
  }
  if (challenge.status === 'pending') await respondToChallenge(account, challenge.url, domain);
}

async function cleanup({ solver, domain, token, keyAuth }: Presented, attempt: Attempt): Promise<void> {
  try {
    await solver.cleanup(domain, token, keyAuth);
  } catch (err) {
    attempt.log.warn({ domain, step: 'cleanup', ca: attempt.ca, challenge: solver.type, err: String(err) }, 'acme challenge cleanup failed');
  }
}
