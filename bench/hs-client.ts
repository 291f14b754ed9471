// Handshake load generator, run as its own process (node --import tsx bench/hs-client.ts '<json>').
// Closed loop: `concurrency` connections at a time, each a full TLS 1.3 handshake (key exchange
// `groups`, default X25519; the server's ECDSA P-256 certificate, no session resumption: no
// session is ever offered), then the
// socket is closed (FIN, not a reset); no HTTP request. SNI walks the seeded names from..from+count-1:
//   once  each name exactly once, in order (the gateway's cache is cold for every one of them)
//   loop  round-robin over the names until the time is up (cache warm when the set fits it)
// Every `checkEvery`-th handshake checks the served certificate names the SNI.
// `random` makes the names random ones below a suffix (the flood): a handshake refused with a TLS
// alert counts in `alerts` (an answer too), other failures in `errors`.
// Prints one JSON line with the results and exits.
import { randomBytes } from 'node:crypto';
import { connect, createSecureContext } from 'node:tls';
import { seededName } from './util.ts';

interface Options {
  port: number;
  from: number;
  count: number;
  mode: 'once' | 'loop';
  concurrency: number;
  durationMs: number;
  checkEvery?: number;
  /** Explicit names instead of seeded ones (e.g. one name). */
  names?: string[];
  /** `count` random names `<hex>.<suffix>` instead (checkEvery is then ignored). */
  random?: { count: number; suffix: string };
  /**
   * The key-exchange groups offered (node:tls `ecdhCurve`). Default 'X25519': what every server
   * compared can do, so each does the same work (Node 24's OpenSSL 3.5 would otherwise offer
   * X25519MLKEM768 first, which certgate and a bare node:https server negotiate and Caddy 2.6 and
   * openssl 3.0's s_server cannot). 'default' offers the client's OpenSSL defaults.
   */
  groups?: string;
}

const opts = JSON.parse(process.argv[2] ?? '{}') as Options;
const random = opts.random;
const names = random
  ? Array.from({ length: random.count }, () => `${randomBytes(6).toString('hex')}.${random.suffix}`)
  : (opts.names ?? Array.from({ length: opts.count }, (_, i) => seededName(opts.from + i)));
const checkEvery = opts.checkEvery ?? 8;
// One client context for every connection (a new one per connection would cost the client more
// than the handshake itself). It holds no session cache entries: nothing is ever resumed.
const groups = opts.groups ?? 'X25519';
const secureContext = createSecureContext({ minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3', ...(groups === 'default' ? {} : { ecdhCurve: groups }) });
/** Handshakes per negotiated group, e.g. { X25519: 1000 }: shows what the server chose. */
const negotiated: Record<string, number> = {};
const latencies: number[] = [];
let next = 0;
let done = 0;
let errors = 0;
let alerts = 0;
let wrong = 0;
let resumed = 0;
let tls13 = 0;
let started = 0;
const errorSamples = new Set<string>();
const t0 = performance.now();
const deadline = t0 + opts.durationMs;

function pick(): string | undefined {
  if (performance.now() >= deadline) return undefined;
  if (opts.mode === 'once') return next < names.length ? names[next++] : undefined;
  return names[next++ % names.length];
}

function one(name: string): Promise<void> {
  return new Promise((resolve) => {
    const t = performance.now();
    // Random names have no certificate of their own to check for.
    const check = started++ % checkEvery === 0 && !random;
    const socket = connect({
      host: '127.0.0.1',
      port: opts.port,
      servername: name,
      rejectUnauthorized: false,
      secureContext,
      ALPNProtocols: ['http/1.1'],
    });
    socket.setNoDelay(true);
    const timer = setTimeout(() => socket.destroy(new Error('handshake timeout (10 s)')), 10_000);
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      latencies.push(performance.now() - t);
      done++;
      if (socket.isSessionReused()) resumed++;
      if (socket.getProtocol() === 'TLSv1.3') tls13++;
      const group = socket.getEphemeralKeyInfo();
      const groupName = group && 'name' in group && typeof group.name === 'string' ? group.name : '?';
      negotiated[groupName] = (negotiated[groupName] ?? 0) + 1;
      if (check) {
        const san = socket.getPeerX509Certificate()?.subjectAltName ?? '';
        if (!san.split(', ').includes(`DNS:${name}`)) wrong++;
      }
      // Close as a browser does (FIN after reading what the server sent, e.g. its session
      // tickets), not with a reset; the next handshake starts at once.
      socket.on('error', () => {});
      socket.end();
      setTimeout(() => socket.destroy(), 2000).unref();
      resolve();
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (random && /ALERT|UNRECOGNIZED_NAME/i.test(`${err.code ?? ''} ${err.message}`)) {
        // Refused with an alert: answered (at this point in time).
        latencies.push(performance.now() - t);
        alerts++;
        socket.destroy();
        resolve();
        return;
      }
      errors++;
      if (errorSamples.size < 5) errorSamples.add(`${name}: ${err.message}`);
      socket.destroy();
      resolve();
    });
  });
}

async function worker(): Promise<void> {
  for (let name = pick(); name !== undefined; name = pick()) await one(name);
}

await Promise.all(Array.from({ length: opts.concurrency }, worker));
const elapsedMs = performance.now() - t0;
latencies.sort((a, b) => a - b);
const q = (p: number): number => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] ?? Number.NaN;
process.stdout.write(
  JSON.stringify({
    handshakes: done,
    errors,
    alerts,
    wrongCertificate: wrong,
    resumed,
    tls13,
    checked: random ? 0 : Math.ceil(started / checkEvery),
    elapsedMs,
    perSecond: (done / elapsedMs) * 1000,
    answeredPerSecond: ((done + alerts) / elapsedMs) * 1000,
    latencyMs: { p50: q(50), p90: q(90), p99: q(99) },
    clientCpuMs: (process.resourceUsage().userCPUTime + process.resourceUsage().systemCPUTime) / 1000,
    complete: opts.mode === 'once' ? next >= names.length && done + errors + alerts === names.length : true,
    errorSamples: [...errorSamples],
    groups: negotiated,
  }) + '\n',
);
