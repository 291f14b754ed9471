#!/usr/bin/env node
// One-shot set-up run before `npm test`, `npm run demo` and `npm run bench`: installs npm
// packages when missing or stale, and Debian's pebble (test: also redis-server, bind9, haproxy, chromium; test and bench:
// caddy, wrk, h2load) when missing (with apt-get, as root), otherwise stops with the exact command to run. Plain JS
// on purpose: it runs on whatever `node` is on PATH before node_modules/.bin (and so the pinned
// Node 24) exists.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, lstatSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const purpose = process.argv[2] ?? 'test';

function say(msg) {
  process.stderr.write(`[setup] ${msg}\n`);
}

function npmPackagesStale() {
  const marker = join(root, 'node_modules', '.package-lock.json');
  const lock = join(root, 'package-lock.json');
  if (!existsSync(marker) || !existsSync(join(root, 'node_modules', '.bin', 'node'))) return true;
  return existsSync(lock) && statSync(lock).mtimeMs > statSync(marker).mtimeMs + 1000;
}

// A node_modules symlink is an install shared with other checkouts (git worktrees): `npm ci`
// here would empty the shared directory through the link, under everyone using it.
const sharedInstall = existsSync(join(root, 'node_modules')) && lstatSync(join(root, 'node_modules')).isSymbolicLink();
if (sharedInstall && npmPackagesStale()) {
  say('node_modules is a symlink to a shared install that looks older than package-lock.json; not running npm ci here (it would empty the shared install). Update it where it lives if needed.');
} else if (npmPackagesStale()) {
  say('installing npm packages (npm ci)');
  const r = spawnSync('npm', ['ci', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) {
    say('npm ci failed; run `npm ci` in the project root and retry');
    process.exit(1);
  }
}

function have(cmd) {
  // Daemons such as named live in /usr/sbin, which a non-root PATH may lack.
  return spawnSync('sh', ['-c', `command -v ${cmd} || test -x /usr/sbin/${cmd}`], { stdio: 'ignore' }).status === 0;
}

// Debian packages each purpose needs, keyed by the binary that proves the package is there.
const needed = { pebble: 'pebble', 'pebble-challtestsrv': 'pebble', openssl: 'openssl', curl: 'curl' };
// The bench's tools: `npm test` runs the bench too (test/bench/bench.test.ts, --smoke).
const benchTools = { caddy: 'caddy', wrk: 'wrk', h2load: 'nghttp2-client' };
// dns-01 tests run a real authoritative DNS server (bind9's named) and check it with dig.
// The edge tests put Debian's haproxy in front (PROXY protocol); the dashboard test drives Debian's chromium.
if (purpose === 'test') Object.assign(needed, { 'redis-server': 'redis-server', named: 'bind9', dig: 'bind9-dnsutils', haproxy: 'haproxy', chromium: 'chromium' }, benchTools);
if (purpose === 'bench') Object.assign(needed, benchTools);
const missing = [...new Set(Object.entries(needed).filter(([bin]) => !have(bin)).map(([, pkg]) => pkg))];

if (missing.length > 0) {
  const cmd = `apt-get update && apt-get install -y ${missing.join(' ')}`;
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!isRoot) {
    say(`missing Debian packages: ${missing.join(', ')}. Run:\n  sudo sh -c '${cmd}'`);
    process.exit(1);
  }
  say(`installing Debian packages: ${missing.join(', ')}`);
  try {
    execFileSync('sh', ['-c', cmd], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  } catch {
    say(`apt-get failed; run this and retry:\n  ${cmd}`);
    process.exit(1);
  }
}
