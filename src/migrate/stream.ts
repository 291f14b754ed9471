// Bounded concurrency over a stream: util/concurrency.ts's forEachConcurrently takes an array,
// but a source of 100,000 entries (a Redis SCAN, a directory walk) is read as it is worked
// through, never held whole in memory.

/**
 * Runs `fn` over the items of `items`, at most `limit` at a time, pulling the next item only when
 * a worker is free. Rejects with the first error `fn` throws, after the running calls settle
 * (no further items are pulled).
 */
export async function forEachOfStream<T>(items: AsyncIterable<T>, limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  const iterator = items[Symbol.asyncIterator]();
  let failed = false;
  let firstError: unknown;
  // Pulls are serialised: an async iterator may not be asked for two items at once.
  let pulling: Promise<unknown> = Promise.resolve();
  const next = (): Promise<IteratorResult<T>> => {
    const pulled = pulling.then(() => iterator.next());
    pulling = pulled.catch(() => undefined);
    return pulled;
  };
  const worker = async (): Promise<void> => {
    while (!failed) {
      const step = await next();
      if (step.done) return;
      try {
        await fn(step.value);
      } catch (err) {
        if (!failed) firstError = err;
        failed = true;
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.max(1, limit) }, worker));
  } finally {
    if (failed) await iterator.return?.();
  }
  if (failed) throw firstError;
}
