// The soak's loads, run in the bench process at bounded rates (each light enough for one event
// loop): keep-alive proxy requests, one first request per new name, and random-SNI handshakes.
// Every outcome is kept with its start and end time so the soak can tell failures inside the
// Redis-restart window from failures outside it.
import { Agent, request } from 'node:https';
import { randomBytes } from 'node:crypto';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { httpsGet } from './clients.ts';
import { sleep } from './util.ts';

/** One failed request or handshake: when it started and ended (s since the soak started), and why. */
export interface Failure {
  startS: number;
  endS: number;
  error: string;
}

/** What one load did. */
export interface LoadTally {
  ok: number;
  failures: Failure[];
  /** Starts skipped because the load's concurrency bound was reached (noise only). */
  skipped: number;
  /** Successes by their start time (s since the soak started); new names only, for "issuance stopped". */
  okStartsS: number[];
}

const tally = (): LoadTally => ({ ok: 0, failures: [], skipped: 0, okStartsS: [] });

/** The three loads' common inputs. */
export interface LoadTarget {
  port: number;
  /** performance.now() of the soak's start. */
  t0: number;
  /** Set to stop every load (each finishes what is in flight). */
  stopped: () => boolean;
}

const sinceS = (t0: number): number => (performance.now() - t0) / 1000;

/** Sockets whose certificate was checked (Node gives a kept-alive socket's certificate only for its first response). */
const checked = new WeakSet<TLSSocket>();

/** GET / on a keep-alive connection for `name`; ok when 200, on a connection whose certificate names it. */
function keepAliveGet(agent: Agent, port: number, name: string, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, servername: name, path: '/', headers: { host: name }, agent, rejectUnauthorized: false, timeout: timeoutMs });
    req.once('timeout', () => req.destroy(new Error(`no response within ${timeoutMs} ms`)));
    req.once('error', (err) => resolve(err.message));
    req.once('response', (res) => {
      const socket = res.socket as TLSSocket;
      let san: string | undefined;
      // A resumed session (the agent keeps tickets) carries no certificate: nothing to check then.
      if (!checked.has(socket) && !socket.isSessionReused()) san = socket.getPeerX509Certificate()?.subjectAltName ?? '';
      checked.add(socket);
      res.resume();
      res.once('error', (err) => resolve(err.message));
      res.once('end', () => {
        if (res.statusCode !== 200) resolve(`HTTP ${res.statusCode}`);
        else if (san !== undefined && !san.split(', ').includes(`DNS:${name}`)) resolve(`certificate for ${san || 'no name'}, not ${name}`);
        else resolve(undefined);
      });
    });
    req.end();
  });
}

/**
 * Keep-alive proxy traffic: `connections` loops, each sending GETs for one of `names` at
 * `ratePerS / connections` a second through a keep-alive agent (new sockets only when one closes).
 */
export async function proxyLoad(target: LoadTarget, names: string[], connections: number, ratePerS: number): Promise<LoadTally> {
  const t = tally();
  const agent = new Agent({ keepAlive: true, maxSockets: connections });
  const intervalMs = (1000 * connections) / ratePerS;
  const loop = async (i: number): Promise<void> => {
    const name = names[i % names.length]!;
    while (!target.stopped()) {
      const startS = sinceS(target.t0);
      const error = await keepAliveGet(agent, target.port, name, 10_000);
      if (error) t.failures.push({ startS, endS: sinceS(target.t0), error: `${name}: ${error}` });
      else t.ok++;
      await sleep(Math.max(0, intervalMs - (sinceS(target.t0) - startS) * 1000));
    }
  };
  await Promise.all(Array.from({ length: connections }, (_, i) => loop(i)));
  agent.destroy();
  return t;
}

/** A first request (fresh connection) for a new name every `everyMs`: issued on demand, then proxied. */
export async function newNameLoad(target: LoadTarget, nameOf: (i: number) => string, everyMs: number): Promise<LoadTally> {
  const t = tally();
  const inFlight = new Set<Promise<void>>();
  for (let i = 0; !target.stopped(); i++) {
    const startS = sinceS(target.t0);
    const name = nameOf(i);
    const p = httpsGet(target.port, name, 30_000).then((r) => {
      if (r.ok) {
        t.ok++;
        t.okStartsS.push(startS);
      } else t.failures.push({ startS, endS: sinceS(target.t0), error: `${name}: ${r.error ?? (r.rightCertificate ? `HTTP ${r.status}` : `HTTP ${r.status}, not its own certificate`)}` });
    });
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p));
    await sleep(everyMs);
  }
  await Promise.all(inFlight);
  return t;
}

/** One handshake for `servername`; resolves with undefined when answered (any certificate or a TLS alert). */
function noiseHandshake(port: number, servername: string, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false });
    const done = (error: string | undefined): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(error);
    };
    const timer = setTimeout(() => done(`no answer within ${timeoutMs} ms`), timeoutMs);
    socket.once('secureConnect', () => done(undefined));
    // An alert (e.g. unrecognized_name) is an answer; a reset, refusal or time-out is not.
    socket.once('error', (err) => done(/alert/i.test(err.message) ? undefined : err.message));
  });
}

/** Random-SNI noise: names no policy approves, `ratePerS` a second, at most `concurrency` at once. */
export async function noiseLoad(target: LoadTarget, suffix: string, ratePerS: number, concurrency: number): Promise<LoadTally> {
  const t = tally();
  let inFlight = 0;
  const pending = new Set<Promise<void>>();
  while (!target.stopped()) {
    if (inFlight >= concurrency) t.skipped++;
    else {
      inFlight++;
      const startS = sinceS(target.t0);
      const name = `${randomBytes(6).toString('hex')}.${suffix}`;
      const p = noiseHandshake(target.port, name, 10_000).then((error) => {
        inFlight--;
        if (error) t.failures.push({ startS, endS: sinceS(target.t0), error: `${name}: ${error}` });
        else t.ok++;
      });
      pending.add(p);
      void p.finally(() => pending.delete(p));
    }
    await sleep(1000 / ratePerS);
  }
  await Promise.all(pending);
  return t;
}
