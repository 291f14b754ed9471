// Authorizations and challenges (RFC 8555 §7.5): the CA's proof that the account controls one
// identifier. An authorization offers challenges; answering one (respondToChallenge) asks the CA
// to validate it, and the authorization turns valid or invalid (the failed challenge says why).
import type { AcmeAccount } from './account.ts';
import { AcmeError, ACME_ERROR, type AcmeIdentifier, type AcmeProblem } from './errors.ts';
import { poll, type WaitOptions } from './poll.ts';
import { header, requireJson } from './transport.ts';

/** The authorization states of §7.1.6. */
export type AuthorizationStatus = 'pending' | 'valid' | 'invalid' | 'deactivated' | 'expired' | 'revoked';
/** The challenge states of §7.1.6. */
export type ChallengeStatus = 'pending' | 'processing' | 'valid' | 'invalid';

/** A challenge object (§8): `token` goes into the key authorization. */
export interface AcmeChallenge {
  type: string;
  url: string;
  status: ChallengeStatus;
  token: string;
  validated?: string;
  error?: AcmeProblem;
}

/** An authorization object (§7.1.4) plus its own URL. For a wildcard the identifier lacks the `*.`. */
export interface AcmeAuthorization {
  url: string;
  identifier: AcmeIdentifier;
  status: AuthorizationStatus;
  expires?: string;
  challenges: AcmeChallenge[];
  wildcard?: boolean;
}

async function postAuthorization(account: AcmeAccount, url: string, payload: unknown, step: string, signal?: AbortSignal): Promise<{ authz: AcmeAuthorization; retryAfter: string | undefined; status: number }> {
  const ctx = { step };
  const res = await account.post(url, payload, ctx, { signal });
  return { authz: { ...requireJson<Omit<AcmeAuthorization, 'url'>>(res, ctx), url }, retryAfter: header(res, 'retry-after'), status: res.status };
}

/** The authorization's current state (POST-as-GET). Errors carry no domain: the caller knows it. */
export async function getAuthorization(account: AcmeAccount, url: string): Promise<AcmeAuthorization> {
  return (await postAuthorization(account, url, undefined, 'authorization')).authz;
}

/** Gives up an authorization the account no longer needs (§7.5.2). */
export async function deactivateAuthorization(account: AcmeAccount, url: string): Promise<AcmeAuthorization> {
  return (await postAuthorization(account, url, { status: 'deactivated' }, 'deactivate-authorization')).authz;
}

/** Tells the CA the challenge is ready to be validated; the answer is before validation. */
export async function respondToChallenge(account: AcmeAccount, challengeUrl: string, domain?: string): Promise<AcmeChallenge> {
  const ctx = { step: 'challenge', domain };
  const res = await account.post(challengeUrl, {}, ctx);
  return requireJson<AcmeChallenge>(res, ctx);
}

/**
 * Polls until the authorization is valid. Any other final state throws an AcmeError with step
 * 'authorization', the identifier as domain, and the failed challenge's problem (type, detail,
 * subproblems), so the caller can tell "the CA could not validate" from a transport failure.
 */
export function waitForAuthorization(account: AcmeAccount, url: string, opts: WaitOptions = {}): Promise<AcmeAuthorization> {
  return poll<AcmeAuthorization>(
    account.transport,
    async (signal) => {
      const { authz, retryAfter, status } = await postAuthorization(account, url, undefined, 'authorization', signal);
      const domain = authz.identifier?.value;
      if (authz.status === 'valid') return { done: authz };
      if (authz.status === 'pending') return { retryAfter, domain };
      throw validationError(authz, status);
    },
    { step: 'authorization', ...opts },
  );
}

/** The error of an authorization that ended neither valid nor pending. */
function validationError(authz: AcmeAuthorization, status: number): AcmeError {
  const failed = authz.challenges?.find((c) => c.error) ?? authz.challenges?.find((c) => c.status === 'invalid');
  const problem = failed?.error;
  return new AcmeError({
    type: problem?.type ?? `${ACME_ERROR}unauthorized`,
    status: problem?.status ?? status,
    detail: (failed ? `${failed.type} challenge: ` : '') + (problem?.detail ?? `authorization is ${authz.status}`),
    step: 'authorization',
    domain: authz.identifier?.value,
    subproblems: problem?.subproblems,
  });
}
