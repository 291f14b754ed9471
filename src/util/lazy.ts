// A value made by an async call on first use and shared by every caller after that; a failure is
// not kept, so the next caller tries again instead of getting the old error forever.

/** A shared, retry-on-failure async value. Concurrent first callers share one call of `make`. */
export class Lazy<T> {
  private current: Promise<T> | undefined;

  constructor(private readonly make: () => Promise<T>) {}

  /** The value, made now if there is none (or the last attempt failed). */
  get(): Promise<T> {
    if (!this.current) {
      const p = this.make();
      this.current = p;
      p.catch(() => {
        if (this.current === p) this.current = undefined;
      });
    }
    return this.current;
  }

  /** The value if it is made or being made, without starting anything. */
  peek(): Promise<T> | undefined {
    return this.current;
  }

  /** Replaces the value (a known one), or forgets it (undefined) so the next get() makes it anew. */
  set(value: Promise<T> | undefined): void {
    this.current = value;
  }
}
