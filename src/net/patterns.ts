// Host patterns used by onDemand.allow and proxy routes, as Caddy, Kubernetes Ingress and TLS
// wildcard certificates read them:
//   shop.example.com     that name only
//   *.customers.example  exactly one label below the suffix (a.customers.example, not
//                        a.b.customers.example)
//   **.customers.example any depth below the suffix (a.customers.example, a.b.customers.example)
// Neither wildcard matches the suffix itself. Before issue 13 `*.` meant any depth: start-up
// warns about every `*.` pattern (src/config/describe.ts).
import { normalizeDomainName } from './names.ts';

/** What a pattern matches: the name itself, one label below it, or any depth below it. */
export type PatternKind = 'exact' | 'one-label' | 'any-depth';

/**
 * Splits a written pattern into its kind and the rest (the name, or the suffix without `*.` /
 * `**.`), not normalised. Any other use of `*` stays in the rest, for the caller to refuse.
 */
export function splitPattern(pattern: string): { kind: PatternKind; rest: string } {
  if (pattern.startsWith('**.')) return { kind: 'any-depth', rest: pattern.slice(3) };
  if (pattern.startsWith('*.')) return { kind: 'one-label', rest: pattern.slice(2) };
  return { kind: 'exact', rest: pattern };
}

/** Whether onDemand.allow accepts `pattern`: a name or suffix a CA could issue for (Unicode allowed). */
export function isValidPattern(pattern: string): boolean {
  return normalizeDomainName(splitPattern(pattern).rest) !== undefined;
}

/**
 * Values keyed by host patterns, looked up in O(labels) however many patterns there are. The most
 * specific pattern wins: the exact name, then `*.parent`, then `**.suffix` from the nearest
 * suffix outwards. The first value added for a pattern wins. Names passed in (to add and lookup)
 * must already be normalised by the caller.
 */
export class HostPatternMap<V> {
  private readonly exact = new Map<string, V>();
  private readonly oneLabel = new Map<string, V>();
  private readonly anyDepth = new Map<string, V>();

  get size(): number {
    return this.exact.size + this.oneLabel.size + this.anyDepth.size;
  }

  /** `name` is the exact name, or the suffix without its `*.` / `**.`. */
  add(name: string, kind: PatternKind, value: V): void {
    const map = kind === 'exact' ? this.exact : kind === 'one-label' ? this.oneLabel : this.anyDepth;
    if (!map.has(name)) map.set(name, value);
  }

  lookup(name: string): V | undefined {
    const exact = this.exact.get(name);
    if (exact !== undefined) return exact;
    let dot = name.indexOf('.');
    if (dot === -1) return undefined;
    if (this.oneLabel.size !== 0) {
      const hit = this.oneLabel.get(name.slice(dot + 1));
      if (hit !== undefined) return hit;
    }
    if (this.anyDepth.size === 0) return undefined;
    // Most specific first: 'a.b.example.org' tries 'b.example.org', then 'example.org', 'org'.
    for (; dot !== -1; dot = name.indexOf('.', dot + 1)) {
      const hit = this.anyDepth.get(name.slice(dot + 1));
      if (hit !== undefined) return hit;
    }
    return undefined;
  }
}

/** A set of allowed-name patterns (onDemand.allow). Throws on a pattern isValidPattern refuses. */
export class HostPatternSet {
  private readonly patterns = new HostPatternMap<true>();

  constructor(patterns: Iterable<string>) {
    for (const p of patterns) {
      const { kind, rest } = splitPattern(p);
      const name = normalizeDomainName(rest);
      if (name === undefined) throw new Error(`invalid host pattern ${JSON.stringify(p)}`);
      this.patterns.add(name, kind, true);
    }
  }

  get size(): number {
    return this.patterns.size;
  }

  /** `name` must already be normalised. */
  matches(name: string): boolean {
    return this.patterns.lookup(name) === true;
  }
}
