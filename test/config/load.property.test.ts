// Property tests (fast-check, fixed seed, bounded runs) for the config loader: random and
// mutated config objects, and mutated YAML text. The loader either returns a usable config or
// throws its own ConfigError naming the problems; never a TypeError, never a crash. A failure
// prints the seed and the shrunk counterexample.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { ConfigError, parseConfig, type LoadedConfig } from '../../src/config/load.ts';
import { parseConfigText } from '../../src/config/read.ts';

const RUNS = { seed: 42, numRuns: 300 } as const;

/** Valid starting points that between them use most keys. */
const BASES: Array<Record<string, unknown>> = [
  {},
  {
    listen: { https: '127.0.0.1:8443', http: ':8080', admin: '127.0.0.1:2019' },
    storage: { file: { path: './data' } },
    workers: 2,
    acme: { directory: 'https://127.0.0.1:14000/dir', email: 'ops@example.com', eab: { kid: 'k', hmac: 'h' }, lockTtl: '30s', retry: { delays: ['1m', '10m'] } },
    onDemand: {
      allow: ['*.customers.test', '**.deep.test', 'shop.example.com'],
      ask: 'http://127.0.0.1:9000/allow',
      handshakeWait: '5s',
      dns: { targets: ['203.0.113.10', 'edge.platform.test'], resolvers: ['127.0.0.1:8053'] },
      limits: { perClient: { rate: 1, burst: 5 }, global: false },
      preflight: { resolvers: ['[::1]:53'], httpPort: 80 },
    },
    tls: { cacheSize: 100, fallback: { cert: 'c.pem', key: 'k.pem' } },
    proxy: { upstream: 'http://127.0.0.1:8080', routes: [{ hosts: ['*.example.org', 'a.test'], upstream: 'https://127.0.0.1:9090' }] },
    admin: { token: '0123456789abcdef0123' },
    renewal: { fraction: 0.5, jitter: 0 },
    log: { level: 'warn' },
  },
  {
    storage: { redis: { sentinel: { name: 'm', sentinels: [{ host: '127.0.0.1', port: 26379 }], password: 'pw' } } },
    acme: { issuers: [{ directory: 'https://ca.test/dir', eab: { kid: 'k', hmac: 'h' } }, { directory: 'https://ca2.test/dir', staging: 'https://staging.test/dir' }], budgets: { newOrders: { limit: 10, window: '1h' } } },
    role: 'edge',
  },
];

/** A duration string the syntax accepts, up to far past what a double holds ("999…9s"). */
function hugeDuration(): fc.Arbitrary<string> {
  return fc.tuple(fc.integer({ min: 1, max: 400 }), fc.constantFrom('ms', 's', 'm', 'h', 'd'), fc.boolean()).map(([n, unit, frac]) => `${'9'.repeat(n)}${frac ? '.5' : ''}${unit}`);
}

/** Values that have broken parsers before: wrong types, edges of ranges, numbers YAML can spell. */
const nasty = fc.oneof(
  fc.jsonValue({ maxDepth: 2 }),
  fc.constantFrom(Infinity, -Infinity, NaN, -1, 0, 0.5, 2 ** 53, '', ' ', '*', '**.', 'auto', false, true, null, [], {}, '__proto__', 'constructor'),
  hugeDuration(),
  fc.constantFrom('1.5s', '1e3s', '-5s', '5 s', '20x', 'redis://:pw@127.0.0.1:6379', 'http://u:p@h/', '[::1]:53', ':0', '0.0.0.0:99999', 'bücher.test', 'xn--a.test', '*.xn--a.test'),
);

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Every path to a value in `v` (objects and arrays included), the root first. */
function paths(v: unknown, at: Array<string | number> = []): Array<Array<string | number>> {
  const out = [at];
  if (Array.isArray(v)) v.forEach((x, i) => out.push(...paths(x, [...at, i])));
  else if (v !== null && typeof v === 'object') for (const [k, x] of Object.entries(v)) out.push(...paths(x, [...at, k]));
  return out;
}

type Mutation = { kind: 'set' | 'delete' | 'add'; pick: number; value: unknown; key: string };
const mutation: fc.Arbitrary<Mutation> = fc.record({
  kind: fc.constantFrom('set', 'delete', 'add'),
  pick: fc.nat(),
  value: nasty,
  key: fc.oneof(fc.constantFrom('allow', 'routes', 'hosts', 'url', 'password', 'hmac', 'window', 'limit', '__proto__', 'constructor', 'toString'), fc.string({ maxLength: 8 })),
});

function mutate(base: unknown, mutations: Mutation[]): unknown {
  let root: unknown = structuredClone(base);
  for (const m of mutations) {
    const all = paths(root);
    const path = all[m.pick % all.length]!;
    if (path.length === 0) {
      if (m.kind === 'set') root = m.value;
      continue;
    }
    let parent = root as Record<string | number, unknown>;
    for (const p of path.slice(0, -1)) parent = parent[p] as Record<string | number, unknown>;
    const last = path.at(-1)!;
    const target = parent[last];
    if (m.kind === 'set') parent[last] = m.value;
    else if (m.kind === 'delete') {
      if (Array.isArray(parent)) parent.splice(Number(last), 1);
      else delete parent[last];
    } else if (target !== null && typeof target === 'object' && !Array.isArray(target)) {
      Object.defineProperty(target, m.key, { value: m.value, enumerable: true, writable: true, configurable: true });
    }
  }
  return root;
}

const mutatedConfig = fc.tuple(fc.constantFrom(...BASES), fc.array(mutation, { minLength: 1, maxLength: 4 })).map(([b, ms]) => mutate(b, ms));
const anyConfig = fc.oneof(mutatedConfig, fc.jsonValue({ maxDepth: 4 }), fc.dictionary(fc.constantFrom('listen', 'storage', 'acme', 'onDemand', 'proxy', 'tls', 'admin', 'workers', 'role', 'renewal', 'log'), nasty));

/** The loader's contract: a config, or a ConfigError listing problems as "key: what is wrong". */
function load(raw: unknown): LoadedConfig | ConfigError {
  try {
    return parseConfig(raw, { baseDir: '/etc/certgate', file: '/etc/certgate/config.yaml' });
  } catch (err) {
    assert.ok(err instanceof ConfigError, `not a ConfigError: ${(err as Error)?.stack ?? String(err)}`);
    assert.match(err.message, /^invalid config in \/etc\/certgate\/config\.yaml:\n {2}- /);
    assert.ok(err.problems.length > 0 && err.problems.every((p) => typeof p === 'string' && p.includes(': ')), err.message);
    return err;
  }
}

/** A loaded config holds no NaN or infinite number: each would be a time-out or size nobody meant. */
function assertFinite(v: unknown, at = 'config'): void {
  if (typeof v === 'number') assert.ok(Number.isFinite(v), `${at} is ${v}`);
  else if (Array.isArray(v)) v.forEach((x, i) => assertFinite(x, `${at}[${i}]`));
  else if (v !== null && typeof v === 'object') for (const [k, x] of Object.entries(v)) assertFinite(x, `${at}.${k}`);
}

test('the bases are valid (so the mutations start from real configs)', () => {
  for (const base of BASES) assert.ok(!(load(base) instanceof ConfigError), JSON.stringify(base));
});

test('random and mutated config objects: a usable config or a ConfigError, never a crash', () => {
  fc.assert(
    fc.property(anyConfig, (raw) => {
      const out = load(raw);
      if (!(out instanceof ConfigError)) assertFinite(out);
    }),
    RUNS,
  );
});

test('every duration key: a finite number of milliseconds or a ConfigError, however many digits', () => {
  const durationKeys: Array<[string, string]> = [
    ['onDemand', 'handshakeWait'],
    ['onDemand', 'askTimeout'],
    ['acme', 'lockTtl'],
    ['acme', 'timeout'],
    ['renewal', 'checkInterval'],
    ['tls', 'ticketKeyRotation'],
    ['proxy', 'upstreamTimeout'],
  ];
  fc.assert(
    fc.property(fc.constantFrom(...durationKeys), hugeDuration(), ([section, key], value) => {
      const out = load({ [section]: { [key]: value } });
      if (!(out instanceof ConfigError)) assertFinite(out);
    }),
    RUNS,
  );
});

const textEdit = fc.record({ at: fc.nat(), drop: fc.nat({ max: 6 }), insert: fc.oneof(fc.string({ maxLength: 6 }), fc.constantFrom(':', '- ', '\n', '  ', '{', '[', '&a ', '*a',  '!!str ', '!!int ', '!!float ', '<<: *a\n', '"', "'", '#', '\t', '.nan', '.inf', '~')) });

test('mutated YAML text: a usable config or a ConfigError, never a crash', async (t) => {
  // yaml reports odd but parseable text (unknown tags, ambiguous aliases) as process warnings:
  // expected here, and thousands of them would bury the test output.
  t.mock.method(process, 'emitWarning', () => {});
  await fc.assert(
    fc.asyncProperty(mutatedConfig, fc.array(textEdit, { maxLength: 4 }), async (raw, edits) => {
      let text = stringify(raw as Json);
      for (const e of edits) {
        const at = e.at % (text.length + 1);
        text = text.slice(0, at) + e.insert + text.slice(at + e.drop);
      }
      let parsed: unknown;
      try {
        parsed = await parseConfigText(text, '/etc/certgate/config.yaml');
      } catch (err) {
        assert.ok(err instanceof ConfigError, `not a ConfigError: ${(err as Error)?.stack ?? String(err)}`);
        assert.match(err.message, /^config file \/etc\/certgate\/config\.yaml is not valid YAML: /);
        return;
      }
      const out = load(parsed);
      if (!(out instanceof ConfigError)) assertFinite(out);
    }),
    RUNS,
  );
});
