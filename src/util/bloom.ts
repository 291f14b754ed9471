// A set of strings that answers "certainly not in it" or "maybe in it", in a few bits per member.
//   1. One Bloom filter of m bits and k hash functions, sized for n members at a false-positive
//      rate p: m = -n·ln p / ln²2, k = (m/n)·ln 2 (~10 bits, 7 hashes per member at p = 1%).
//   2. The k bit positions come from two 32-bit FNV-1a hashes of the string (double hashing,
//      h1 + i·h2), so a lookup walks the string twice and allocates nothing.
//   3. A member added is found for ever (no false negatives); nothing can be removed.
//   4. GrowingBloomFilter: when its last filter holds the n it was sized for, it adds one of
//      twice the size at half the rate, so any number of members keeps the overall rate below
//      2·p (p + p/2 + p/4 …) and ~1.5-2× the bits of a filter sized right from the start.

/** A fixed-size Bloom filter (steps 1-3 of the header). */
export class BloomFilter {
  /** How many members it was sized for. */
  readonly capacity: number;
  private readonly bits: Uint32Array;
  private readonly size: number;
  private readonly hashes: number;
  private members = 0;

  /** Sized for `capacity` members (at least 1) at `falsePositiveRate` (0 < p < 1). */
  constructor(capacity: number, falsePositiveRate: number) {
    if (!(falsePositiveRate > 0 && falsePositiveRate < 1)) throw new RangeError(`BloomFilter needs 0 < falsePositiveRate < 1, got ${falsePositiveRate}`);
    this.capacity = Math.max(1, Math.ceil(capacity));
    this.size = Math.max(32, Math.ceil((-this.capacity * Math.log(falsePositiveRate)) / (Math.LN2 * Math.LN2)));
    this.hashes = Math.max(1, Math.round((this.size / this.capacity) * Math.LN2));
    this.bits = new Uint32Array(Math.ceil(this.size / 32));
  }

  /** Members added so far (a member added twice counts twice). */
  get count(): number {
    return this.members;
  }

  /** The memory its bits take, in bytes. */
  get bytes(): number {
    return this.bits.byteLength;
  }

  /** Adds `value`; has(value) is true from now on. */
  add(value: string): void {
    const h1 = fnv1a(value, 0x811c9dc5);
    const h2 = fnv1a(value, 0x01000193) | 1;
    for (let i = 0; i < this.hashes; i++) {
      const bit = (h1 + Math.imul(i, h2)) >>> 0;
      const at = bit % this.size;
      this.bits[at >>> 5]! |= 1 << (at & 31);
    }
    this.members++;
  }

  /** false: `value` was certainly never added; true: it may have been. */
  has(value: string): boolean {
    const h1 = fnv1a(value, 0x811c9dc5);
    const h2 = fnv1a(value, 0x01000193) | 1;
    for (let i = 0; i < this.hashes; i++) {
      const bit = (h1 + Math.imul(i, h2)) >>> 0;
      const at = bit % this.size;
      if ((this.bits[at >>> 5]! & (1 << (at & 31))) === 0) return false;
    }
    return true;
  }
}

/** Bloom filters that grow with their members (step 4 of the header). */
export class GrowingBloomFilter {
  private readonly filters: BloomFilter[];

  /** Sized for `capacity` members at first; the overall false-positive rate stays below 2·`falsePositiveRate`. */
  constructor(
    capacity: number,
    private readonly falsePositiveRate: number,
  ) {
    this.filters = [new BloomFilter(capacity, falsePositiveRate / 2)];
  }

  /** The memory all its bits take, in bytes. */
  get bytes(): number {
    return this.filters.reduce((sum, f) => sum + f.bytes, 0);
  }

  /** Adds `value`; has(value) is true from now on. */
  add(value: string): void {
    let last = this.filters.at(-1)!;
    if (last.count >= last.capacity) {
      last = new BloomFilter(last.capacity * 2, this.falsePositiveRate / 2 ** (this.filters.length + 1));
      this.filters.push(last);
    }
    last.add(value);
  }

  /** false: `value` was certainly never added; true: it may have been. */
  has(value: string): boolean {
    for (const filter of this.filters) if (filter.has(value)) return true;
    return false;
  }
}

/** 32-bit FNV-1a over the string's UTF-16 code units, from `seed`. */
function fnv1a(value: string, seed: number): number {
  let h = seed;
  for (let i = 0; i < value.length; i++) {
    h ^= value.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  // Final avalanche (murmur3's fmix32): FNV's low bits alone spread short similar names poorly.
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
