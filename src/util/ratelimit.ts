// Token buckets: `rate` tokens per second refill continuously, at most `burst` are saved up.
// Keyed buckets (one per client IP) live in a bounded LRU, so a flood from many addresses
// costs a fixed amount of memory; an evicted key simply starts again with a full bucket.
import { LruCache } from './lru.ts';

/** A token bucket's refill rate and size (onDemand.limits.perClient and global). */
export interface BucketLimit {
  /** Tokens added per second. */
  rate: number;
  /** Most tokens a bucket holds (and what it starts with). */
  burst: number;
}

interface BucketState {
  tokens: number;
  updatedAt: number;
}

function refill(state: BucketState, limit: BucketLimit, now: number): void {
  const elapsed = Math.max(0, now - state.updatedAt) / 1000;
  state.tokens = Math.min(limit.burst, state.tokens + elapsed * limit.rate);
  state.updatedAt = now;
}

/** One token bucket. Time comes in as `now` so callers and tests pass it; no timers. */
export class TokenBucket {
  private readonly state: BucketState;

  constructor(readonly limit: BucketLimit, now = Date.now()) {
    this.state = { tokens: limit.burst, updatedAt: now };
  }

  /** Whole tokens available now. */
  remaining(now = Date.now()): number {
    refill(this.state, this.limit, now);
    return Math.floor(this.state.tokens);
  }

  canTake(now = Date.now()): boolean {
    return this.remaining(now) >= 1;
  }

  /** Takes one token if there is one. */
  take(now = Date.now()): boolean {
    refill(this.state, this.limit, now);
    if (this.state.tokens < 1) return false;
    this.state.tokens -= 1;
    return true;
  }
}

/**
 * A token bucket per key (client address), the least recently used dropped beyond `maxKeys`
 * (a dropped key starts full again).
 */
export class KeyedTokenBuckets {
  private readonly buckets: LruCache<string, BucketState>;

  constructor(readonly limit: BucketLimit, maxKeys: number) {
    this.buckets = new LruCache(maxKeys);
  }

  /** Keys currently tracked (bounded by maxKeys). */
  get size(): number {
    return this.buckets.size;
  }

  canTake(key: string, now = Date.now()): boolean {
    const state = this.buckets.get(key, now);
    if (!state) return true; // a new key starts with a full bucket
    refill(state, this.limit, now);
    return state.tokens >= 1;
  }

  take(key: string, now = Date.now()): boolean {
    let state = this.buckets.get(key, now);
    if (!state) {
      state = { tokens: this.limit.burst, updatedAt: now };
      this.buckets.set(key, state);
    }
    refill(state, this.limit, now);
    if (state.tokens < 1) return false;
    state.tokens -= 1;
    return true;
  }
}
