// CPU per ACME request of the transport's HTTP client (issue 19, item 3), against a real Pebble
// (a separate process, so only the client's CPU is counted): AcmeTransport.request() over its
// default undici Agent, over an undici Agent without HTTP/2, and a bare node:https keep-alive
// Agent, a bare TLS socket writing the request itself (the floor); plus the per-request
// AbortSignal.timeout + AbortSignal.any alone. Variants take turns, `rounds` times; medians
// printed. With `gapMs` > 0 the requests go one at a time, `gapMs` apart, the way an issuance's
// few requests reach the CA (only the time around each request is counted): on this VM each
// then costs ~3x what it does back to back (caches gone cold meanwhile).
//
//   node --import tsx bench/acme-transport-cpu.ts [requests=600] [rounds=3] [gapMs=0]
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { readFileSync } from 'node:fs';
import { connect, rootCertificates } from 'node:tls';
import { setTimeout as sleep } from 'node:timers/promises';
import { AcmeTransport } from '../src/acme/plumbing/transport.ts';
import { undici } from '../src/util/undici.ts';
import { startPebble } from '../test/support/pebble.ts';
import { freePort } from '../test/support/ports.ts';

const requests = Number(process.argv[2] ?? 600);
const rounds = Number(process.argv[3] ?? 3);
const gapMs = Number(process.argv[4] ?? 0);
const CONCURRENCY = 8;

const pebble = await startPebble({ httpPort: await freePort(), tlsPort: await freePort() });
const ca = readFileSync(pebble.listenerCaPath, 'utf8');

/** Runs `one` `requests` times, CONCURRENCY at a time; returns the process's CPU µs per request. */
async function cpuPer(one: () => Promise<unknown>): Promise<number> {
  for (let i = 0; i < 20; i++) await one(); // connections and code warm
  if (gapMs > 0) {
    let us = 0;
    for (let i = 0; i < requests; i++) {
      await sleep(gapMs);
      const t = process.cpuUsage();
      await one();
      const used = process.cpuUsage(t);
      us += used.user + used.system;
    }
    return us / requests;
  }
  const before = process.cpuUsage();
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next++ < requests) await one();
    }),
  );
  const used = process.cpuUsage(before);
  return (used.user + used.system) / requests;
}

const defaultTransport = new AcmeTransport({ directoryUrl: pebble.directoryUrl, trustedRoots: [ca] });
const h1Transport = new AcmeTransport({
  directoryUrl: pebble.directoryUrl,
  dispatcher: new (undici().Agent)({ connect: { ca: [...rootCertificates, ca] }, allowH2: false, keepAliveTimeout: 10_000, connections: 8 }),
});
const agent = new HttpsAgent({ keepAlive: true, maxSockets: 8, ca: [...rootCertificates, ca] });
const nodeHttps = (): Promise<string> =>
  new Promise((resolve, reject) => {
    const req = httpsRequest(pebble.directoryUrl, { agent, signal: AbortSignal.timeout(30_000) }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve(text));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
const url = new URL(pebble.directoryUrl);
const socket = connect({ host: url.hostname, port: Number(url.port), ca, servername: 'localhost' });
await new Promise((resolve) => socket.once('secureConnect', resolve));
/** One GET on the bare TLS socket, read until Content-Length is there (one at a time only). */
const bareTls = (): Promise<void> =>
  new Promise((resolve) => {
    let text = '';
    const onData = (chunk: Buffer): void => {
      text += chunk.toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      const length = /content-length: (\d+)/i.exec(text);
      if (end < 0 || !length || text.length < end + 4 + Number(length[1])) return;
      socket.off('data', onData);
      resolve();
    };
    socket.on('data', onData);
    socket.write(`GET ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\n\r\n`);
  });
const ctx = { step: 'bench' };
const longLived = new AbortController().signal;
const variants: Record<string, () => Promise<unknown>> = {
  'AcmeTransport.request (undici Agent, defaults)': () => defaultTransport.request('GET', pebble.directoryUrl, ctx),
  'AcmeTransport.request, caller signal (AbortSignal.any too)': () => defaultTransport.request('GET', pebble.directoryUrl, ctx, { signal: longLived }),
  'AcmeTransport.request (undici Agent, allowH2: false)': () => h1Transport.request('GET', pebble.directoryUrl, ctx),
  'node:https keep-alive Agent': nodeHttps,
  'AbortSignal.timeout + AbortSignal.any alone': async () => AbortSignal.any([AbortSignal.timeout(30_000), longLived]),
  ...(gapMs > 0 ? { 'bare TLS socket (the floor)': bareTls } : {}),
};
const results = new Map<string, number[]>();
try {
  for (let r = 0; r < rounds; r++) {
    const names = Object.keys(variants);
    if (r % 2 === 1) names.reverse();
    for (const name of names) {
      const us = await cpuPer(variants[name]!);
      results.set(name, [...(results.get(name) ?? []), us]);
    }
  }
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const how = gapMs > 0 ? `one at a time, ${gapMs} ms apart` : `${CONCURRENCY} at a time`;
  console.log(`client CPU per request (µs), GET of Pebble's directory, ${requests} requests ${how}, median of ${rounds} rounds:`);
  for (const [name, xs] of results) console.log(`  ${median(xs).toFixed(0).padStart(6)}  ${name}   [${xs.map((x) => x.toFixed(0)).join(', ')}]`);
} finally {
  await defaultTransport.close();
  await h1Transport.close();
  agent.destroy();
  socket.destroy();
  await pebble.stop();
}
process.exit(0); // the un-owned undici Agent's idle sockets would keep the process 10 s
