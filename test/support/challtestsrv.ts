// Sets pebble-challtestsrv's DNS answers (the DNS Pebble's validator and the gateway's
// pre-flight ask) through its management API. Without a mock it answers 127.0.0.1 for every A.
import { request } from 'undici';

async function post(base: string, path: string, body: unknown): Promise<void> {
  const res = await request(`${base}${path}`, { method: 'POST', body: JSON.stringify(body) });
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`challtestsrv ${path}: HTTP ${res.statusCode}: ${text}`);
}

/** Answers A queries for `host` with `addresses` (e.g. 127.0.0.2: loopback where nothing listens). */
export function addA(challtestsrvUrl: string, host: string, addresses: string[]): Promise<void> {
  return post(challtestsrvUrl, '/add-a', { host, addresses });
}

/** Back to the default answer (127.0.0.1). */
export function clearA(challtestsrvUrl: string, host: string): Promise<void> {
  return post(challtestsrvUrl, '/clear-a', { host });
}
