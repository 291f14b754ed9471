// Maps upstream failures to the status and wording of the answer the client gets. The answer
// never names the upstream's address (internal topology is not the client's business); the
// warn log line that goes with it does.
import { STATUS_CODES } from '../util/node-http.ts';
import { UPSTREAM_NOT_ALLOWED } from './upstream-allow.ts';

/** How an upstream failure is answered: status, wording, and the error code for logs. */
export interface UpstreamFailure {
  status: 502 | 504;
  /** Completes "upstream ..." (and "upstream <origin> ..." in log lines). */
  reason: string;
  code: string;
}

/** The time-outs the wording of 504 answers quotes. */
export interface FailureContext {
  connectTimeoutMs: number;
  upstreamTimeoutMs: number;
}

/** The error code of a Node/undici error (its `code`, else its `name`), 'UNKNOWN' when neither. */
export function errorCode(err: unknown): string {
  if (err !== null && typeof err === 'object') {
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string' && code !== '') return code;
    const name = (err as { name?: unknown }).name;
    if (typeof name === 'string' && name !== '') return name;
  }
  return 'UNKNOWN';
}

/** Status, wording and code of the answer to a client whose upstream failed with `err`. */
export function classifyUpstreamError(err: unknown, ctx: FailureContext): UpstreamFailure {
  const code = errorCode(err);
  switch (code) {
    case 'ECONNREFUSED':
      return { status: 502, reason: 'refused the connection', code };
    case 'ECONNRESET':
    case 'EPIPE':
      return { status: 502, reason: 'reset the connection', code };
    case 'UND_ERR_SOCKET':
      return { status: 502, reason: 'closed the connection unexpectedly', code };
    case 'UND_ERR_CONNECT_TIMEOUT':
    case 'ETIMEDOUT':
      return { status: 504, reason: `did not accept the connection within ${ctx.connectTimeoutMs} ms`, code };
    case 'UND_ERR_HEADERS_TIMEOUT':
      return { status: 504, reason: `did not answer within ${ctx.upstreamTimeoutMs} ms`, code };
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return { status: 502, reason: 'could not be resolved', code };
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'EHOSTDOWN':
      return { status: 502, reason: 'is unreachable', code };
    case UPSTREAM_NOT_ALLOWED:
      return { status: 502, reason: 'is not an allowed address', code };
    case 'UPSTREAM_INVALID_RESPONSE':
      return { status: 502, reason: 'sent an invalid response', code };
    case 'UND_ERR_HEADERS_OVERFLOW':
      return { status: 502, reason: 'sent response headers that are too large', code };
    default:
      if (/CERT|SSL|TLS|SELF_SIGNED|HOSTNAME_MISMATCH/.test(code)) {
        return { status: 502, reason: 'failed the TLS handshake', code };
      }
      return { status: 502, reason: `failed (${code})`, code };
  }
}

/**
 * The plain-text body a client gets for an upstream failure, e.g. "502 Bad Gateway: upstream
 * refused the connection". It never names the upstream (its address stays in the log line).
 */
export function failureBody(failure: UpstreamFailure): string {
  return `${failure.status} ${STATUS_CODES[failure.status]}: upstream ${failure.reason}\n`;
}
