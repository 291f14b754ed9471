// Property tests (fast-check, fixed seed, bounded runs) for host patterns: HostPatternMap and
// HostPatternSet against a naive reference that tries every pattern. `*.s` matches exactly the
// names one label below s, `**.s` every name below s, neither s itself; the most specific
// pattern wins (exact, then by suffix length, `*.` before `**.` at one suffix, first added).
// A failure prints the seed and the shrunk counterexample.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { HostPatternMap, HostPatternSet, splitPattern, type PatternKind } from '../../src/net/patterns.ts';

const RUNS = { seed: 42, numRuns: 400 } as const;

// A small alphabet of labels, so that random names and patterns often overlap.
const label = fc.constantFrom('a', 'b', 'c', 'xn--bcher-kva', 'test');
const name = fc.array(label, { minLength: 2, maxLength: 6 }).map((ls) => ls.join('.'));
const suffix = fc.array(label, { minLength: 1, maxLength: 4 }).map((ls) => ls.join('.'));
const kind = fc.constantFrom<PatternKind>('exact', 'one-label', 'any-depth');
const pattern = fc.record({ kind, name: suffix });
// Written patterns (onDemand.allow) need a name a CA could issue for: two labels or more.
const suffix2 = fc.array(label, { minLength: 2, maxLength: 4 }).map((ls) => ls.join('.'));
const pattern2 = fc.record({ kind, name: suffix2 });

interface Pattern {
  kind: PatternKind;
  name: string;
}

/** Naive: does `p` match `host`? Counts labels instead of walking suffixes. */
function naiveMatches(p: Pattern, host: string): boolean {
  if (p.kind === 'exact') return host === p.name;
  if (!host.endsWith(`.${p.name}`)) return false;
  const extra = host.split('.').length - p.name.split('.').length;
  return p.kind === 'one-label' ? extra === 1 : extra >= 1;
}

/** Naive lookup: every matching pattern, the most specific first. */
function naiveLookup(patterns: Pattern[], host: string): number | undefined {
  const hits = patterns.map((p, i) => ({ p, i })).filter(({ p }) => naiveMatches(p, host));
  hits.sort(
    (x, y) =>
      Number(y.p.kind === 'exact') - Number(x.p.kind === 'exact') ||
      y.p.name.split('.').length - x.p.name.split('.').length ||
      Number(y.p.kind === 'one-label') - Number(x.p.kind === 'one-label') ||
      x.i - y.i,
  );
  return hits[0]?.i;
}

const written = (p: Pattern): string => (p.kind === 'exact' ? p.name : p.kind === 'one-label' ? `*.${p.name}` : `**.${p.name}`);

test('HostPatternMap finds what the naive reference finds, the most specific pattern first', () => {
  fc.assert(
    fc.property(fc.array(pattern, { maxLength: 12 }), fc.array(name, { minLength: 1, maxLength: 20 }), (patterns, hosts) => {
      const map = new HostPatternMap<number>();
      patterns.forEach((p, i) => map.add(p.name, p.kind, i));
      // Also the names the patterns themselves spell, and one label below and two below them.
      const probes = [...hosts, ...patterns.flatMap((p) => [p.name, `a.${p.name}`, `b.a.${p.name}`])];
      for (const host of probes) assert.equal(map.lookup(host), naiveLookup(patterns, host), `${host} in [${patterns.map(written).join(', ')}]`);
    }),
    RUNS,
  );
});

test('HostPatternSet from written patterns: *.s is one label below s, **.s any depth, neither s', () => {
  fc.assert(
    fc.property(fc.array(pattern2, { minLength: 1, maxLength: 8 }), fc.array(name, { minLength: 1, maxLength: 20 }), (patterns, hosts) => {
      const set = new HostPatternSet(patterns.map(written));
      for (const p of patterns) {
        assert.deepEqual(splitPattern(written(p)), { kind: p.kind, rest: p.name });
      }
      for (const host of [...hosts, ...patterns.flatMap((p) => [p.name, `a.${p.name}`, `b.a.${p.name}`])]) {
        assert.equal(set.matches(host), patterns.some((p) => naiveMatches(p, host)), `${host} in [${patterns.map(written).join(', ')}]`);
      }
    }),
    RUNS,
  );
});

test('a single *.s / **.s pattern matches exactly the names one / any labels deeper than s', () => {
  fc.assert(
    fc.property(suffix2, fc.array(label, { maxLength: 4 }), (s, prefix) => {
      const host = [...prefix, s].join('.');
      const depth = prefix.length;
      assert.equal(new HostPatternSet([`*.${s}`]).matches(host), depth === 1, `*.${s} vs ${host}`);
      assert.equal(new HostPatternSet([`**.${s}`]).matches(host), depth >= 1, `**.${s} vs ${host}`);
    }),
    RUNS,
  );
});
