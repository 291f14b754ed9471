// The cloudflare DNS provider: Cloudflare's API v4 with an API token (`acme.dns.cloudflare.apiToken`,
// needing Zone:Read and DNS:Edit on the zone).
//
//   present(fqdn, value) / cleanup(fqdn, value)
//     1. the zone: GET /zones?name=<candidate> for fqdn and then each parent, the first match
//        wins (remembered per name). None → DnsProviderError step "zone".
//     2. present: POST /zones/{zone_id}/dns_records { type: TXT, name, content, ttl: 60 }. Other
//        values at the name stay (each is its own record); Cloudflare's "identical record already
//        exists" (code 81058) counts as success.
//        cleanup: GET /zones/{zone_id}/dns_records?type=TXT&name=<fqdn>, then DELETE
//        /zones/{zone_id}/dns_records/{id} for each record whose content is exactly `value`
//        (Cloudflare may return the content in quotes).
//     3. every request is bounded by `timeoutMs`; a non-success answer becomes a DnsProviderError
//        naming the step, the name, the HTTP status and Cloudflare's error codes and messages.
import { undici } from '../../util/undici.ts';
import { DnsProviderError, type DnsProvider } from './provider.ts';

/** `acme.dns.cloudflare` as the config gives it. */
export interface CloudflareOptions {
  /** API token with Zone:Read and DNS:Edit for the zones certgate writes challenges in. */
  apiToken: string;
}

/** What the cloudflare provider takes besides its config. */
export interface CloudflareDeps {
  /** API base URL without trailing slash; default https://api.cloudflare.com/client/v4 (tests: a local fake). */
  baseUrl?: string;
  /** Bound on one API request, ms. Default 15 s. */
  timeoutMs?: number;
}

const DEFAULT_BASE_URL = 'https://api.cloudflare.com/client/v4';
const DEFAULT_TIMEOUT_MS = 15_000;
const ALREADY_EXISTS = 81058;

/** Cloudflare's answer envelope. */
interface Envelope<T> {
  success?: boolean;
  errors?: { code?: number; message?: string }[];
  result?: T;
}

/** One API answer; `request` is "METHOD path" for error messages. */
interface Reply<T> {
  ok: boolean;
  status: number;
  envelope: Envelope<T>;
  request: string;
}

function unquote(content: string): string {
  return content.length >= 2 && content.startsWith('"') && content.endsWith('"') ? content.slice(1, -1) : content;
}

/** The Cloudflare API provider (see the header). */
export class CloudflareProvider implements DnsProvider {
  readonly name = 'cloudflare';
  readonly #token: string;
  readonly #baseUrl: string;
  readonly #timeoutMs: number;
  readonly #zones = new Map<string, string>();

  constructor(options: CloudflareOptions, deps: CloudflareDeps = {}) {
    this.#token = options.apiToken;
    this.#baseUrl = (deps.baseUrl ?? DEFAULT_BASE_URL).replace(/\/+$/, '');
    this.#timeoutMs = deps.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  /** Adds one TXT record `value` at `fqdn` (see DnsProvider.present). */
  async present(fqdn: string, value: string): Promise<void> {
    const name = fqdn.replace(/\.$/, '').toLowerCase();
    const zoneId = await this.#zoneId(name);
    const body = { type: 'TXT', name, content: value, ttl: 60 };
    const res = await this.#call<unknown>('present', name, 'POST', `/zones/${zoneId}/dns_records`, body);
    if (!res.ok && !res.envelope.errors?.some((e) => e.code === ALREADY_EXISTS)) throw this.#refused('present', name, res);
  }

  /** Deletes the TXT records at `fqdn` whose content is `value` (see DnsProvider.cleanup). */
  async cleanup(fqdn: string, value: string): Promise<void> {
    const name = fqdn.replace(/\.$/, '').toLowerCase();
    const zoneId = await this.#zoneId(name);
    const query = `?type=TXT&name=${encodeURIComponent(name)}`;
    const list = await this.#call<{ id: string; content: string }[]>('cleanup', name, 'GET', `/zones/${zoneId}/dns_records${query}`);
    if (!list.ok) throw this.#refused('cleanup', name, list);
    for (const record of list.envelope.result ?? []) {
      if (unquote(record.content) !== value) continue;
      const del = await this.#call<unknown>('cleanup', name, 'DELETE', `/zones/${zoneId}/dns_records/${encodeURIComponent(record.id)}`);
      // 404: deleted meanwhile (another instance's cleanup); the record is gone either way.
      if (!del.ok && del.status !== 404) throw this.#refused('cleanup', name, del);
    }
  }

  /** Lists zones (GET /zones?per_page=1): fails on a bad token or an unreachable API. */
  async check(): Promise<void> {
    const res = await this.#call<unknown>('check', 'zones', 'GET', '/zones?per_page=1');
    if (!res.ok) throw this.#refused('check', 'zones', res);
  }

  /** The zone ID for `name` (header step 1). */
  async #zoneId(name: string): Promise<string> {
    const known = this.#zones.get(name);
    if (known !== undefined) return known;
    const labels = name.split('.');
    for (let i = 0; i < labels.length - 1; i++) {
      const candidate = labels.slice(i).join('.');
      const res = await this.#call<{ id: string; name: string }[]>('zone', name, 'GET', `/zones?name=${encodeURIComponent(candidate)}`);
      if (!res.ok) throw this.#refused('zone', name, res);
      const zone = res.envelope.result?.find((z) => z.name.toLowerCase() === candidate);
      if (zone) {
        this.#zones.set(name, zone.id);
        return zone.id;
      }
    }
    throw new DnsProviderError(`cloudflare zone ${name}: no zone of this API token contains it`, 'zone', 'cloudflare');
  }

  async #call<T>(step: string, name: string, method: string, path: string, body?: unknown): Promise<Reply<T>> {
    let status: number;
    let text: string;
    try {
      const res = await undici().request(`${this.#baseUrl}${path}`, {
        method: method as 'GET',
        headers: { authorization: `Bearer ${this.#token}`, 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
      status = res.statusCode;
      text = await res.body.text();
    } catch (err) {
      const why = (err as Error).name === 'TimeoutError' ? `no answer within ${this.#timeoutMs} ms` : (err as Error).message;
      throw new DnsProviderError(`cloudflare ${step} ${name}: ${method} ${path}: ${why}`, step, 'cloudflare', { cause: err });
    }
    let envelope: Envelope<T>;
    try {
      envelope = JSON.parse(text) as Envelope<T>;
    } catch {
      envelope = { success: false, errors: [{ message: `not JSON: ${text.slice(0, 200)}` }] };
    }
    return { ok: status >= 200 && status < 300 && envelope.success !== false, status, envelope, request: `${method} ${path}` };
  }

  #refused(step: string, name: string, res: Reply<unknown>): DnsProviderError {
    const errors = (res.envelope.errors ?? []).map((e) => `${e.code ?? '?'} ${e.message ?? ''}`.trim()).join('; ') || 'no error detail';
    return new DnsProviderError(`cloudflare ${step} ${name}: ${res.request} answered HTTP ${res.status}: ${errors}`, step, 'cloudflare');
  }
}
