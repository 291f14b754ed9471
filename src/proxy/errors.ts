// Maps upstream failures to the status and wording of the answer the client gets.

export interface UpstreamFailure {
  status: 502 | 504;
  /** Completes "upstream <origin> ...". */
  reason: string;
  code: string;
}

export interface FailureContext {
  connectTimeoutMs: number;
  upstreamTimeoutMs: number;
}

export function errorCode(err: unknown): string {
  if (err !== null && typeof err === 'object') {
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string' && code !== '') return code;
    const name = (err as { name?: unknown }).name;
    if (typeof name === 'string' && name !== '') return name;
  }
  return 'UNKNOWN';
}

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
    case 'UND_ERR_HEADERS_OVERFLOW':
      return { status: 502, reason: 'sent response headers that are too large', code };
    default:
      if (/CERT|SSL|TLS|SELF_SIGNED|HOSTNAME_MISMATCH/.test(code)) {
        return { status: 502, reason: 'failed the TLS handshake', code };
      }
      return { status: 502, reason: `failed (${code})`, code };
  }
}
