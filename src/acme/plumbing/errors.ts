// Errors of the ACME client: RFC 7807 problem documents from the CA, plus a few local types
// (time-outs, network failures, unusable answers) under urn:certgate:error:*.

/** Prefix of the problem types RFC 8555 §6.7 defines (`${ACME_ERROR}badNonce`, ...). */
export const ACME_ERROR = 'urn:ietf:params:acme:error:';

/** Problem types of our own, for failures that are not an ACME problem document. */
export const LocalErrorType = {
  /** A request or a polling loop ran out of time. */
  timeout: 'urn:certgate:error:timeout',
  /** The caller's AbortSignal fired. */
  aborted: 'urn:certgate:error:aborted',
  /** Connection refused/reset, TLS failure, DNS failure, ... */
  network: 'urn:certgate:error:network',
  /** An HTTP error without a problem document, or an answer we cannot use. */
  http: 'urn:certgate:error:http',
  /** The server's answer is missing something the protocol requires (Location, finalize URL...). */
  protocol: 'urn:certgate:error:protocol',
  /** No configured solver matches the challenges the authorization offers. */
  noSolver: 'urn:certgate:error:no-solver',
} as const;

/** An identifier (§9.7.7): type 'dns' with a name, or 'ip' with an address (RFC 8738). */
export interface AcmeIdentifier {
  type: string;
  value: string;
}

/** One identifier's part of a compound problem (§6.7.1). */
export interface AcmeSubproblem {
  type: string;
  detail?: string;
  identifier?: AcmeIdentifier;
}

/** An RFC 7807 problem document as ACME servers send it. */
export interface AcmeProblem {
  type: string;
  detail?: string;
  status?: number;
  identifier?: AcmeIdentifier;
  subproblems?: AcmeSubproblem[];
}

/** Fields of an AcmeError; `step` and `domain` end up in its message. */
export interface AcmeErrorInit {
  /** ACME problem type (urn:ietf:params:acme:error:...) or a LocalErrorType. */
  type: string;
  /** HTTP status of the response that carried the problem; 0 when there was none. */
  status: number;
  detail: string;
  /** Which step failed: 'directory', 'new-nonce', 'new-account', 'new-order', 'authorization', 'challenge', 'finalize', 'download', ... */
  step: string;
  domain?: string;
  retryAfterMs?: number;
  subproblems?: AcmeSubproblem[];
  cause?: unknown;
}

/**
 * Every failure of an ACME request or flow. `message` reads "ACME <step> for <domain> failed: ...";
 * `type` says what failed (CA problem or LocalErrorType), `status` the HTTP status (0: no answer),
 * `retryAfterMs` the CA's Retry-After when it sent one (rate limits, 503).
 */
export class AcmeError extends Error {
  readonly type: string;
  readonly status: number;
  readonly detail: string;
  readonly step: string;
  readonly domain?: string;
  readonly retryAfterMs?: number;
  readonly subproblems?: AcmeSubproblem[];

  constructor(init: AcmeErrorInit) {
    super(AcmeError.format(init), init.cause === undefined ? undefined : { cause: init.cause });
    this.name = 'AcmeError';
    this.type = init.type;
    this.status = init.status;
    this.detail = init.detail;
    this.step = init.step;
    if (init.domain !== undefined) this.domain = init.domain;
    if (init.retryAfterMs !== undefined) this.retryAfterMs = init.retryAfterMs;
    if (init.subproblems !== undefined && init.subproblems.length > 0) this.subproblems = init.subproblems;
  }

  /** The short name of the problem type: 'badNonce', 'rateLimited', 'timeout', ... */
  get shortType(): string {
    return this.type.slice(this.type.lastIndexOf(':') + 1);
  }

  /** Another AcmeError with the same problem but a different step/domain. */
  withContext(ctx: { step?: string; domain?: string }): AcmeError {
    return new AcmeError({
      type: this.type,
      status: this.status,
      detail: this.detail,
      step: ctx.step ?? this.step,
      domain: ctx.domain ?? this.domain,
      retryAfterMs: this.retryAfterMs,
      subproblems: this.subproblems,
      cause: this.cause,
    });
  }

  private static format(init: AcmeErrorInit): string {
    const where = init.domain ? `ACME ${init.step} for ${init.domain} failed` : `ACME ${init.step} failed`;
    const short = init.type.slice(init.type.lastIndexOf(':') + 1);
    const http = init.status > 0 ? `, HTTP ${init.status}` : '';
    let msg = `${where}: ${init.detail || short} (${short}${http})`;
    for (const sub of init.subproblems ?? []) {
      const subShort = sub.type.slice(sub.type.lastIndexOf(':') + 1);
      msg += `; ${sub.identifier?.value ?? '?'}: ${sub.detail ?? subShort} (${subShort})`;
    }
    return msg;
  }
}

/** True for an AcmeError, of the given `type` when one is named (full URN, ACME short name, or local short name). */
export function isAcmeError(err: unknown, type?: string): err is AcmeError {
  if (!(err instanceof AcmeError)) return false;
  if (type === undefined) return true;
  return err.type === type || err.type === ACME_ERROR + type || err.shortType === type;
}
