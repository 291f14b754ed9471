// One certificate from order to PEM chain: new-order → authorizations (challenge per solver)
// → finalize → download. Logs one JSON line per step with domain, step, ca and ms (elapsed).
import { silentLogger, type Logger } from '../log.ts';
import type { AcmeAuthorization, AcmeClient, AcmeOrder } from './client.ts';
import { AcmeError, LocalErrorType } from './errors.ts';

export type ChallengeType = 'http-01' | 'tls-alpn-01' | 'dns-01';

export interface ChallengeSolver {
  readonly type: ChallengeType;
  /** Makes the challenge answerable (http-01 file, tls-alpn-01 cert, dns-01 TXT record). */
  present(domain: string, token: string, keyAuthorization: string): Promise<void>;
  /** Removes what present() set up. Always called, even after failures. */
  cleanup(domain: string, token: string, keyAuthorization: string): Promise<void>;
}

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
  /** Passed to newOrder. */
  profile?: string;
  /** ARI: the certificate ID this order replaces. */
  replaces?: string;
}

export interface ObtainResult {
  /** Full chain, leaf first. */
  certificatePem: string;
  orderUrl: string;
  /** The challenge type solved for each authorization that needed one (reused valid ones add nothing). */
  challengeTypes: string[];
}

/** Local problem type of a solver's present() failure. */
export const SOLVER_ERROR = 'urn:certgate:error:solver';

function abortError(signal: AbortSignal, external: AbortSignal | undefined, step: string, domain: string, timeoutMs: number): AcmeError {
  const aborted = external?.aborted === true;
  return new AcmeError({
    type: aborted ? LocalErrorType.aborted : LocalErrorType.timeout,
    status: 0,
    detail: aborted ? 'aborted by caller' : `certificate not obtained within ${timeoutMs} ms`,
    step,
    domain,
    cause: signal.reason,
  });
}

/** Rejects as soon as `signal` aborts, without waiting for `work` (which is left to settle). */
function race<T>(work: Promise<T>, signal: AbortSignal, onAbort: () => Error): Promise<T> {
  if (signal.aborted) {
    work.catch(() => undefined);
    return Promise.reject(onAbort());
  }
  return new Promise<T>((resolve, reject) => {
    const listener = (): void => reject(onAbort());
    signal.addEventListener('abort', listener, { once: true });
    work.then(
      (v) => {
        signal.removeEventListener('abort', listener);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', listener);
        reject(e);
      },
    );
  });
}

export async function obtainCertificate(client: AcmeClient, opts: ObtainOptions): Promise<ObtainResult> {
  const log = opts.logger ?? silentLogger();
  const ca = client.directoryUrl;
  const primary = opts.domains[0];
  if (primary === undefined) throw new Error('obtainCertificate: no domains');
  if (opts.solvers.length === 0) throw new Error('obtainCertificate: no challenge solvers');
  const timeoutMs = opts.timeoutMs ?? 90_000;
  const deadline = Date.now() + timeoutMs;
  const remaining = (): number => Math.max(1, deadline - Date.now());
  const failFast = new AbortController();
  const signals = [AbortSignal.timeout(timeoutMs), failFast.signal];
  if (opts.signal) signals.push(opts.signal);
  const signal = AbortSignal.any(signals);
  const started = performance.now();

  /** Runs one step: races it against the overall signal, logs it, puts step/domain on errors. */
  const step = async <T>(name: string, domain: string, fn: () => Promise<T>, extra: Record<string, unknown> = {}): Promise<T> => {
    const t0 = performance.now();
    try {
      const value = await race(fn(), signal, () => abortError(signal, opts.signal, name, domain, timeoutMs));
      log.info(
        { domain, step: name, ca, ms: Math.round(performance.now() - t0), totalMs: Math.round(performance.now() - started), ...extra },
        `acme ${name}`,
      );
      return value;
    } catch (err) {
      let error: unknown = err;
      if (err instanceof AcmeError) {
        if (err.domain === undefined || err.domain.includes(',')) error = err.withContext({ domain });
      } else if (signal.aborted) {
        error = abortError(signal, opts.signal, name, domain, timeoutMs);
      }
      if (!failFast.signal.aborted || !(error instanceof AcmeError && error.type === LocalErrorType.aborted)) {
        log.warn(
          {
            domain,
            step: name,
            ca,
            ms: Math.round(performance.now() - t0),
            err: error instanceof Error ? error.message : String(error),
            ...extra,
          },
          `acme ${name} failed`,
        );
      }
      throw error;
    }
  };

  await step('account', primary, () => client.ensureAccount());
  const order: AcmeOrder = await step('new-order', primary, () =>
    client.newOrder(opts.domains, {
      ...(opts.profile !== undefined ? { profile: opts.profile } : {}),
      ...(opts.replaces !== undefined ? { replaces: opts.replaces } : {}),
    }),
  );
  if (order.status === 'invalid') {
    throw new AcmeError({
      type: order.error?.type ?? LocalErrorType.protocol,
      status: order.error?.status ?? 0,
      detail: order.error?.detail ?? 'new order is invalid',
      step: 'new-order',
      domain: primary,
    });
  }

  const presented: { solver: ChallengeSolver; domain: string; token: string; keyAuth: string }[] = [];
  const challengeTypes: (string | undefined)[] = new Array<string | undefined>(order.authorizations.length);

  const solveOne = async (authzUrl: string, index: number): Promise<void> => {
    const t0 = performance.now();
    let authz: AcmeAuthorization;
    try {
      authz = await race(client.getAuthorization(authzUrl), signal, () =>
        abortError(signal, opts.signal, 'authorization', primary, timeoutMs),
      );
    } catch (err) {
      throw err instanceof AcmeError && err.domain === undefined ? err.withContext({ domain: primary }) : err;
    }
    // Logs and errors name the wildcard; solvers get the identifier itself (dns-01 answers at
    // _acme-challenge.<identifier> for both).
    const domain = (authz.wildcard ? '*.' : '') + authz.identifier.value;
    const solverDomain = authz.identifier.value;
    if (authz.status === 'valid') {
      log.info(
        { domain, step: 'authorization', ca, ms: Math.round(performance.now() - t0), totalMs: Math.round(performance.now() - started), reused: true },
        'acme authorization already valid',
      );
      return;
    }
    if (authz.status !== 'pending') {
      throw new AcmeError({
        type: LocalErrorType.protocol,
        status: 0,
        detail: `authorization is ${authz.status}`,
        step: 'authorization',
        domain,
      });
    }
    let chosen: { solver: ChallengeSolver; url: string; token: string; status: string } | undefined;
    for (const solver of opts.solvers) {
      const ch = authz.challenges.find((c) => c.type === solver.type);
      if (ch) {
        chosen = { solver, url: ch.url, token: ch.token, status: ch.status };
        break;
      }
    }
    if (!chosen) {
      throw new AcmeError({
        type: LocalErrorType.noSolver,
        status: 0,
        detail: `no solver for offered challenges ${authz.challenges.map((c) => c.type).join(', ')} (have ${opts.solvers.map((s) => s.type).join(', ')})`,
        step: 'challenge',
        domain,
      });
    }
    const { solver, url, token } = chosen;
    const keyAuth = client.keyAuthorization(token);
    challengeTypes[index] = solver.type;
    presented.push({ solver, domain: solverDomain, token, keyAuth });
    await step(
      'challenge',
      domain,
      async () => {
        try {
          await solver.present(solverDomain, token, keyAuth);
        } catch (err) {
          throw new AcmeError({
            type: SOLVER_ERROR,
            status: 0,
            detail: `${solver.type} solver could not present the challenge: ${err instanceof Error ? err.message : String(err)}`,
            step: 'challenge',
            domain,
            cause: err,
          });
        }
        if (chosen.status === 'pending') await client.respondToChallenge(url, domain);
      },
      { challenge: solver.type },
    );
    await step(
      'authorization',
      domain,
      () => client.waitForAuthorization(authzUrl, { signal, timeoutMs: remaining() }),
      { challenge: solver.type },
    );
  };

  try {
    let firstError: unknown;
    await Promise.all(
      order.authorizations.map((url, i) =>
        solveOne(url, i).catch((err: unknown) => {
          firstError ??= err;
          failFast.abort(err);
        }),
      ),
    );
    if (firstError !== undefined) throw firstError;
  } finally {
    await Promise.all(
      presented.map(async ({ solver, domain, token, keyAuth }) => {
        try {
          await solver.cleanup(domain, token, keyAuth);
        } catch (err) {
          log.warn({ domain, step: 'cleanup', ca, challenge: solver.type, err: String(err) }, 'acme challenge cleanup failed');
        }
      }),
    );
  }

  const valid = await step('finalize', primary, () =>
    client.finalizeOrder(order, opts.csrDer, { signal, timeoutMs: remaining() }),
  );
  const certificatePem = await step('download', primary, () => client.downloadCertificate(valid));
  log.info(
    { domain: primary, step: 'obtained', ca, ms: Math.round(performance.now() - started), domains: opts.domains },
    'acme certificate obtained',
  );
  return {
    certificatePem,
    orderUrl: order.url,
    challengeTypes: challengeTypes.filter((t): t is string => t !== undefined),
  };
}
