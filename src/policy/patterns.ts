// Host patterns used by onDemand.allow and proxy routes: an exact name, or `*.suffix`, which
// matches any name below the suffix (one or more labels) but not the suffix itself.
import { normalizeServerName } from '../tls/names.ts';

export function isValidPattern(pattern: string): boolean {
  const exact = pattern.startsWith('*.') ? pattern.slice(2) : pattern;
  return normalizeServerName(exact) !== undefined;
}

/**
 * Values keyed by host patterns, looked up in O(labels) however many patterns there are: an
 * exact name first, then the most specific `*.suffix`. The first value added for a pattern
 * wins. Names passed in must already be normalised by the caller.
 */
export class HostPatternMap<V> {
  private readonly exact = new Map<string, V>();
  private readonly suffixes = new Map<string, V>();

  get size(): number {
    return this.exact.size + this.suffixes.size;
  }

  /** `name` is the exact name, or the suffix without its `*.` when `wildcard` is true. */
  add(name: string, wildcard: boolean, value: V): void {
    const map = wildcard ? this.suffixes : this.exact;
    if (!map.has(name)) map.set(name, value);
  }

  lookup(name: string): V | undefined {
    const exact = this.exact.get(name);
    if (exact !== undefined) return exact;
    if (this.suffixes.size === 0) return undefined;
    // Most specific first: 'a.b.example.org' tries 'b.example.org', then 'example.org', 'org'.
    for (let dot = name.indexOf('.'); dot !== -1; dot = name.indexOf('.', dot + 1)) {
      const hit = this.suffixes.get(name.slice(dot + 1));
      if (hit !== undefined) return hit;
    }
    return undefined;
  }
}

/** A set of allowed-name patterns (onDemand.allow). */
export class HostPatternSet {
  private readonly patterns = new HostPatternMap<true>();

  constructor(patterns: Iterable<string>) {
    for (const p of patterns) {
      const wildcard = p.startsWith('*.');
      const name = normalizeServerName(wildcard ? p.slice(2) : p);
      if (name === undefined) throw new Error(`invalid host pattern ${JSON.stringify(p)}`);
      this.patterns.add(name, wildcard, true);
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
