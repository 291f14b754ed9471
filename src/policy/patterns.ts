// Host patterns used by onDemand.allow and proxy routes: an exact name, or `*.suffix`, which
// matches any name below the suffix (one or more labels) but not the suffix itself.
import { normalizeServerName } from '../tls/names.ts';

export function isValidPattern(pattern: string): boolean {
  const exact = pattern.startsWith('*.') ? pattern.slice(2) : pattern;
  return normalizeServerName(exact) !== undefined;
}

/** O(labels) matching against many patterns: exact names in one set, wildcard suffixes in another. */
export class HostPatternSet {
  private readonly exact = new Set<string>();
  private readonly suffixes = new Set<string>();

  constructor(patterns: Iterable<string>) {
    for (const p of patterns) {
      const wildcard = p.startsWith('*.');
      const name = normalizeServerName(wildcard ? p.slice(2) : p);
      if (name === undefined) throw new Error(`invalid host pattern ${JSON.stringify(p)}`);
      (wildcard ? this.suffixes : this.exact).add(name);
    }
  }

  get size(): number {
    return this.exact.size + this.suffixes.size;
  }

  /** `name` must already be normalised. */
  matches(name: string): boolean {
    if (this.exact.has(name)) return true;
    for (let dot = name.indexOf('.'); dot !== -1; dot = name.indexOf('.', dot + 1)) {
      if (this.suffixes.has(name.slice(dot + 1))) return true;
    }
    return false;
  }
}
