// The dashboard's calls to the admin API (same origin). The admin token lives in sessionStorage
// (gone when the tab closes, never in a URL or a cookie) and every call sends it as
// `Authorization: Bearer`. The live stream is read with fetch() for the same reason (EventSource
// cannot send headers) and reconnects after a pause when it drops.
import { SseParser, type SseMessage } from './sse.ts';

const TOKEN_KEY = 'certgate.admin-token';
const RECONNECT_MS = [1000, 2000, 5000, 10_000];

/** The signed-in admin token (sessionStorage), or null. */
export const token = {
  get: (): string | null => sessionStorage.getItem(TOKEN_KEY),
  set: (value: string): void => sessionStorage.setItem(TOKEN_KEY, value),
  clear: (): void => sessionStorage.removeItem(TOKEN_KEY),
};

/** A call the admin API refused: its HTTP status and its `error` sentence. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly body: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

/** Called on a 401 (token wrong or changed): the app signs out. */
let onUnauthorized: () => void = () => {};
/** Sets what a 401 does (the app: sign out with a message). */
export function whenUnauthorized(handler: () => void): void {
  onUnauthorized = handler;
}

function headers(extra: Record<string, string> = {}): Record<string, string> {
  const value = token.get();
  return value ? { authorization: `Bearer ${value}`, ...extra } : extra;
}

/** One JSON call; throws ApiError with the API's sentence on anything but 2xx. */
export async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(path, {
    method,
    headers: headers(body === undefined ? {} : { 'content-type': 'application/json' }),
    cache: 'no-store',
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  let json: Record<string, unknown>;
  try {
    json = text ? (JSON.parse(text) as Record<string, unknown>) : {};
  } catch {
    json = { error: text };
  }
  if (res.status === 401) onUnauthorized();
  if (!res.ok) throw new ApiError(res.status, typeof json.error === 'string' ? json.error : `${method} ${path}: HTTP ${res.status}`, json);
  return json as T;
}

/** `/v1/domains/<name>` with the name escaped. */
export const domainPath = (name: string): string => `/v1/domains/${encodeURIComponent(name)}`;
/** `/v1/certificates/<name>` with the name escaped. */
export const certificatePath = (name: string): string => `/v1/certificates/${encodeURIComponent(name)}`;

/**
 * Follows GET /v1/events until `signal` aborts: every message to `onMessage`, the connection's
 * state to `onState`. A dropped stream is reopened after 1, 2, 5, then every 10 s; a 401 stops.
 */
export async function followEvents(onMessage: (m: SseMessage) => void, onState: (live: boolean) => void, signal: AbortSignal): Promise<void> {
  let failures = 0;
  while (!signal.aborted) {
    try {
      const res = await fetch('/v1/events', { headers: headers({ accept: 'text/event-stream' }), cache: 'no-store', signal });
      if (res.status === 401) return onUnauthorized();
      if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
      onState(true);
      failures = 0;
      const parser = new SseParser();
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        for (const message of parser.push(value)) onMessage(message);
      }
    } catch {
      if (signal.aborted) return;
    }
    onState(false);
    await new Promise((resolve) => setTimeout(resolve, RECONNECT_MS[Math.min(failures++, RECONNECT_MS.length - 1)]));
  }
}
