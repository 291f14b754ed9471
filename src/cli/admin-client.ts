// The admin API as the command line reaches it:
//   1. where: --admin URL, else the config's listen.admin (--config / CERTGATE_CONFIG), else
//      http://127.0.0.1:2019, the admin API's default; the token from CERTGATE_ADMIN_TOKEN, else
//      the config's admin.token (the gateway's own order), never from a flag (it would show in ps)
//   2. one JSON call with undici (util/undici.ts): redirects are not followed (the token goes to
//      no other host), a time-out per call
//   3. its outcome as an exit code (exit-codes.ts): an answer that is not the admin API's JSON
//      counts as "cannot reach", 401/403 as unauthorized, 404 as not found, any other error as
//      the API's error; every message names the domain and the step
import { CliError, EXIT } from './exit-codes.ts';
import { ConfigError, readConfigFile } from '../config/read.ts';
import { undici } from '../util/undici.ts';

/** The admin API's default address (listen.admin left unset). */
export const DEFAULT_ADMIN_URL = 'http://127.0.0.1:2019';

/** Where the admin API is and the bearer token for it (undefined: send none). */
export interface AdminTarget {
  url: URL;
  token: string | undefined;
}

/**
 * Step 1. `admin`: the --admin flag; `config`: --config or CERTGATE_CONFIG. Throws CliError
 * (EXIT.usage) for a URL that is not http(s), a config that cannot be read or is invalid, or a
 * config whose listen.admin is false (no admin API to talk to).
 */
export async function resolveAdminTarget(opts: { admin?: string | undefined; config?: string | undefined }, env: NodeJS.ProcessEnv = process.env): Promise<AdminTarget> {
  let configured: { url: string; token: string | undefined } | undefined;
  if (opts.config) configured = await fromConfig(opts.config);
  const text = opts.admin ?? configured?.url ?? DEFAULT_ADMIN_URL;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new CliError(`--admin ${JSON.stringify(text)} is not a URL; write it like ${DEFAULT_ADMIN_URL}`, EXIT.usage);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new CliError(`--admin ${text}: only http:// and https:// URLs`, EXIT.usage);
  return { url, token: env.CERTGATE_ADMIN_TOKEN || configured?.token || undefined };
}

/** listen.admin and admin.token of a config file, validated as `certgate run` would. */
async function fromConfig(file: string): Promise<{ url: string; token: string | undefined }> {
  try {
    const { raw, path } = await readConfigFile(file);
    const [{ parseConfig }, { dirname }] = await Promise.all([import('../config/load.ts'), import('node:path')]);
    const config = parseConfig(raw, { file: path, baseDir: dirname(path) });
    const address = config.listen.admin;
    if (address === false) throw new CliError(`config ${path}: listen.admin is false, so there is no admin API to call; pass --admin URL`, EXIT.usage);
    if (address === undefined) return { url: DEFAULT_ADMIN_URL, token: config.admin.token };
    return { url: `http://${connectHost(address.host)}:${address.port}`, token: config.admin.token };
  } catch (err) {
    if (err instanceof ConfigError) throw new CliError(err.message, EXIT.usage);
    throw err;
  }
}

/** A listen host as a URL host to connect to: all interfaces → loopback, IPv6 in brackets. */
function connectHost(host: string): string {
  if (host === '0.0.0.0' || host === '::' || host === '') return '127.0.0.1';
  return host.includes(':') ? `[${host}]` : host;
}

/** One call: what it is about (for messages), its step, and how long it may take. */
export interface CallOptions {
  /** The domain the call is about; messages name it (else "admin API"). */
  name?: string;
  /** The step, e.g. "bind", "read status", "renew": messages name it. */
  step: string;
  /** A JSON body (sent as application/json). */
  body?: unknown;
  /** Default 60 s; a renewal orders at the CA and may take longer. */
  timeoutMs?: number;
  /**
   * The statuses the admin API answers this call with when it succeeds (default [200]); another
   * 2xx means the URL is not the admin API (a catch-all server answering 200 to everything).
   */
  expect?: number[];
}

/** A successful answer: its HTTP status and JSON (undefined for 204). */
export interface CallResult {
  status: number;
  json: unknown;
}

/** Steps 2 and 3: calls the admin API at `target`; see call(). */
export class AdminClient {
  constructor(private readonly target: AdminTarget) {}

  /**
   * `method` `path` (with its query) against the admin API. Resolves with a 2xx answer; throws
   * CliError otherwise, its exitCode saying what happened and its `body` the API's JSON answer.
   */
  async call(method: string, path: string, opts: CallOptions): Promise<CallResult> {
    const subject = opts.name ?? 'admin API';
    const url = new URL(this.target.url.pathname.replace(/\/+$/, '') + path, this.target.url);
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.target.token) headers.authorization = `Bearer ${this.target.token}`;
    if (opts.body !== undefined) headers['content-type'] = 'application/json';
    let status: number;
    let location: string | undefined;
    let text: string;
    try {
      // undici's request follows no redirect: the token goes to no other host.
      const res = await undici().request(url, {
        method: method as 'GET',
        headers,
        body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
        signal: AbortSignal.timeout(opts.timeoutMs ?? 60_000),
      });
      status = res.statusCode;
      location = [res.headers.location].flat()[0];
      text = await res.body.text();
    } catch (err) {
      const why = (err as Error).name === 'TimeoutError' ? `no answer within ${(opts.timeoutMs ?? 60_000) / 1000} s` : (err as Error).message;
      throw new CliError(`${subject}: ${opts.step} failed: cannot reach the admin API at ${this.target.url.origin}: ${why}`, EXIT.unreachable);
    }
    const json = parseJson(text);
    const expected = opts.expect ?? [200];
    if (expected.includes(status) && (status === 204 || (typeof json === 'object' && json !== null))) return { status, json };
    throw this.failure(`${subject}: ${opts.step} failed`, status, location, json, expected);
  }

  /** The CliError for an answer that is not the expected one (or not the admin API's JSON). */
  private failure(what: string, status: number, location: string | undefined, json: unknown, expected: number[]): CliError {
    const notAdmin = `${what}: ${this.target.url.origin} is not a certgate admin API: it answered HTTP ${status}`;
    if (status >= 200 && status < 300) return new CliError(`${notAdmin} where the admin API answers ${expected.join(' or ')} with its JSON`, EXIT.unreachable);
    if (status >= 300 && status < 400) return new CliError(`${notAdmin}, a redirect to ${location ?? '?'} (not followed)`, EXIT.unreachable);
    const apiMessage = (json as { error?: unknown } | undefined)?.error;
    if (typeof apiMessage !== 'string') return new CliError(`${notAdmin} without the API's JSON error`, EXIT.unreachable);
    if (status === 401 || status === 403) {
      const hint = this.target.token ? 'check CERTGATE_ADMIN_TOKEN' : 'set CERTGATE_ADMIN_TOKEN to the admin token';
      return new CliError(`${what}: unauthorized (HTTP ${status}): ${apiMessage}; ${hint}`, EXIT.unauthorized, json);
    }
    return new CliError(`${what}: HTTP ${status}: ${apiMessage}`, status === 404 ? EXIT.notFound : EXIT.apiError, json);
  }
}

/** The body as JSON; undefined when it is empty or not JSON. */
function parseJson(text: string): unknown {
  if (text.trim() === '') return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}
