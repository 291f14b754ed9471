// Starts a real DNS server (Debian's bind9 9.18, `named -g -c <conf> -n 1`) for one test: zones
// with A/CNAME/TXT records, TSIG keys allowed to write TXT at `_acme-challenge` names (and
// anywhere in a DCV delegation zone), on a free loopback port (UDP and TCP), in a temp dir.
// Pebble can validate against it (`startPebble({ dnsServer })`). See the section "dns-01 against
// a real DNS server" of /work/shared/pebble-notes.md for the options used here and why.
//
// It runs as whoever runs the tests (root in CI is fine, not needed: no `-u`, no port < 1024).
// A local root zone keeps lookups for other names (recursion on) from leaving the machine.
// Started through `setpriv --pdeathsig KILL` when available so it dies with the test process;
// stop() kills only the PID started here.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { trackChild, trackDir, untrackDir } from './cleanup.ts';
import { freePort } from './ports.ts';

const NAMED_BIN = '/usr/sbin/named';
const DIG_BIN = '/usr/bin/dig';
const SETPRIV_BIN = '/usr/bin/setpriv';
const HAVE_SETPRIV = existsSync(SETPRIV_BIN);
const START_TIMEOUT_MS = 15_000;
const run = promisify(execFile);

/** A TSIG key bind9 accepts updates signed with. */
export interface Bind9Key {
  name: string;
  algorithm: 'hmac-sha256' | 'hmac-sha512';
  /** base64 */
  secret: string;
}

/** One zone the server is authoritative for. Record names are absolute, without trailing dot. */
export interface Bind9Zone {
  /** e.g. "wild.test" */
  name: string;
  /** name → IPv4 addresses, e.g. { 'wild.test': ['127.0.0.1'], '*.wild.test': ['127.0.0.1'] }. */
  a?: Record<string, string[]>;
  /** name → target (e.g. `_acme-challenge.shop.cust.test` → `shop.cust.test.dcv.platform.test`). */
  cname?: Record<string, string>;
  /** name → TXT values present from the start. */
  txt?: Record<string, string[]>;
  /**
   * Names below the zone where the keys may write TXT (a bind9 `name` grant each). Default:
   * `_acme-challenge.<zone>` only.
   */
  challengeNames?: string[];
}

/** What startBind9 serves. */
export interface Bind9Options {
  zones: Bind9Zone[];
  keys?: Bind9Key[];
  /** A DCV delegation zone: the keys may write TXT anywhere in it (a `subdomain` grant). */
  delegationZone?: string;
  /** Answer recursive queries from 127.0.0.1 (bind9 then follows a CNAME into another zone). */
  recursion?: boolean;
}

/** A running named. */
export interface Bind9Handle {
  /** '127.0.0.1:<port>', for `acme.dns.rfc2136.server`, resolvers and Pebble's `-dnsserver`. */
  address: string;
  port: number;
  /** TXT values at `name` as the server answers them now (none: []), via dig over UDP. */
  txt(name: string): Promise<string[]>;
  /** Everything named printed. */
  output(): string;
  /** Kills named (by PID) and removes the temp dir. Safe to call twice. */
  stop(): Promise<void>;
}

function zoneFile(zone: Bind9Zone): string {
  const lines = [
    '$TTL 60',
    `@ IN SOA ns.${zone.name}. hostmaster.${zone.name}. 1 3600 600 86400 60`,
    `@ IN NS ns.${zone.name}.`,
    `ns.${zone.name}. IN A 127.0.0.1`,
  ];
  for (const [name, addresses] of Object.entries(zone.a ?? {})) {
    for (const address of addresses) lines.push(`${name}. IN A ${address}`);
  }
  for (const [name, target] of Object.entries(zone.cname ?? {})) lines.push(`${name}. IN CNAME ${target}.`);
  for (const [name, values] of Object.entries(zone.txt ?? {})) {
    for (const value of values) lines.push(`${name}. IN TXT "${value}"`);
  }
  return lines.join('\n') + '\n';
}

const ROOT_ZONE = '$TTL 60\n. IN SOA ns.root. hostmaster.root. 1 3600 600 86400 60\n. IN NS ns.root.\nns.root. IN A 127.0.0.1\n';

function grants(keys: Bind9Key[], zone: Bind9Zone, subdomain: boolean): string {
  if (keys.length === 0) return '';
  const lines: string[] = [];
  for (const key of keys) {
    if (subdomain) lines.push(`grant "${key.name}" subdomain ${zone.name}. TXT;`);
    for (const n of zone.challengeNames ?? [`_acme-challenge.${zone.name}`]) lines.push(`grant "${key.name}" name ${n}. TXT;`);
  }
  return `update-policy { ${lines.join(' ')} };`;
}

function namedConf(dir: string, port: number, opts: Bind9Options): string {
  const keys = opts.keys ?? [];
  const zones: { zone: Bind9Zone; subdomain: boolean }[] = opts.zones.map((zone) => ({ zone, subdomain: false }));
  if (opts.delegationZone) zones.push({ zone: { name: opts.delegationZone, challengeNames: [] }, subdomain: true });
  const recursion = opts.recursion ? 'recursion yes; allow-recursion { 127.0.0.1; };' : 'recursion no;';
  return [
    `options { directory "${dir}"; pid-file none; session-keyfile none; managed-keys-directory "${dir}";`,
    `  listen-on port ${port} { 127.0.0.1; }; listen-on-v6 { none; }; dnssec-validation no; notify no;`,
    `  ${recursion} allow-query { 127.0.0.1; }; };`,
    'controls { };',
    ...keys.map((k) => `key "${k.name}" { algorithm ${k.algorithm}; secret "${k.secret}"; };`),
    'zone "." { type primary; file "root.zone"; };',
    ...zones.map(
      ({ zone, subdomain }) => `zone "${zone.name}" { type primary; file "${zone.name}.zone"; ${grants(keys, zone, subdomain)} };`,
    ),
  ].join('\n') + '\n';
}

/** TXT values in dig `+short` output (one record a line, each a series of quoted strings). */
function parseDigTxt(out: string): string[] {
  return out
    .split('\n')
    .filter((line) => line.startsWith('"'))
    .map((line) => [...line.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]!.replace(/\\(.)/g, '$1')).join(''));
}

/** Whether named on `port` answers an SOA query for the root over TCP or UDP. */
async function answers(port: number, tcp: boolean): Promise<boolean> {
  try {
    const args = ['@127.0.0.1', '-p', String(port), '+time=1', '+tries=1', ...(tcp ? ['+tcp'] : []), 'SOA', '.'];
    const { stdout } = await run(DIG_BIN, args);
    return /status: NOERROR/.test(stdout);
  } catch {
    return false;
  }
}

/**
 * Starts named with `opts` on a free loopback port; resolves once it answers. Retries with another
 * port when the one picked was taken in between.
 */
export async function startBind9(opts: Bind9Options): Promise<Bind9Handle> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(opts);
    } catch (err) {
      if (attempt >= 3 || !/address in use|could not listen/i.test(String(err))) throw err;
    }
  }
}

async function startOnce(opts: Bind9Options): Promise<Bind9Handle> {
  const dir = await mkdtemp(join(tmpdir(), 'certgate-bind9-'));
  trackDir(dir);
  let out = '';
  let child: ChildProcess | undefined;
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    const c = child;
    if (c?.pid !== undefined && c.exitCode === null && c.signalCode === null) {
      const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
      try {
        process.kill(c.pid, 'SIGKILL');
        await Promise.race([exited, sleep(3000)]);
      } catch {
        // already gone
      }
    }
    await rm(dir, { recursive: true, force: true });
    untrackDir(dir);
  };
  try {
    const port = await freePort();
    await writeFile(join(dir, 'root.zone'), ROOT_ZONE);
    for (const zone of opts.zones) await writeFile(join(dir, `${zone.name}.zone`), zoneFile(zone));
    if (opts.delegationZone) await writeFile(join(dir, `${opts.delegationZone}.zone`), zoneFile({ name: opts.delegationZone }));
    const conf = join(dir, 'named.conf');
    await writeFile(conf, namedConf(dir, port, opts));
    const args = ['-g', '-c', conf, '-n', '1'];
    const env = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
    child = HAVE_SETPRIV
      ? spawn(SETPRIV_BIN, ['--pdeathsig', 'KILL', '--', NAMED_BIN, ...args], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn(NAMED_BIN, args, { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    trackChild(child);
    child.stdout?.on('data', (c: Buffer) => (out += c.toString('utf8')));
    child.stderr?.on('data', (c: Buffer) => (out += c.toString('utf8')));
    child.on('error', (err) => (out += `spawn error: ${err.message}\n`));
    child.on('exit', (code, signal) => {
      if (!stopped) out += `named exited with ${signal ?? code}\n`;
    });
    const deadline = Date.now() + START_TIMEOUT_MS;
    // named -g prints "running" once every zone is loaded, but its listeners may open a moment
    // later: ready is when it answers a query over both UDP and TCP.
    while (!/\brunning\b/.test(out) || !(await answers(port, false)) || !(await answers(port, true))) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`startBind9: named exited during start-up\n${out}`);
      if (Date.now() > deadline) throw new Error(`startBind9: named did not start within ${START_TIMEOUT_MS} ms\n${out}`);
      await sleep(50);
    }
    if (/could not listen|address in use/i.test(out)) throw new Error(`startBind9: address in use\n${out}`);
    const address = `127.0.0.1:${port}`;
    return {
      address,
      port,
      async txt(name) {
        const { stdout } = await run(DIG_BIN, ['@127.0.0.1', '-p', String(port), '+short', '+time=2', '+tries=2', 'TXT', name]);
        return parseDigTxt(stdout);
      },
      output: () => out,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
