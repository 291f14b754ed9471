// A tiny publish/subscribe bus shared by every gateway instance, used to tell all of them
// "certificate for X changed/deleted" so in-memory caches drop it quickly. Delivery is
// best-effort (at most once): a message published while an instance is disconnected is not
// replayed to it, so caches should also expire entries on their own.
//
// RedisStorage implements it with Redis pub/sub; LocalBus is the in-process version for file
// storage in a single process (and for tests).

import type { Logger } from '../util/log.ts';

/** Broadcast between the gateway instances on one storage. Delivery is best-effort (at most once): a message sent while an instance is disconnected never reaches it, so whatever a message invalidates must also expire on its own. */
export interface ClusterBus {
  /** Fire-and-forget broadcast to every instance (including this one) subscribed to `channel`. */
  publish(channel: string, message: string): Promise<void>;
  /** Returns an unsubscribe function. Handlers never throw into the bus. */
  subscribe(channel: string, handler: (message: string) => void): Promise<() => Promise<void>>;
  /**
   * Called each time the bus is back after a disconnection, during which messages may have been
   * missed (delivery is at most once). Returns a function that removes the listener. Buses that
   * cannot lose messages (in-process) need not implement it.
   */
  onReconnect?(listener: () => void): () => void;
}

/**
 * Calls a bus handler so that nothing it does escapes into the bus: a synchronous throw and a
 * rejected promise (an `async` handler) are both logged and swallowed.
 */
export function deliverSafely(handler: (message: string) => void, message: string, channel: string, logger?: Logger): void {
  const report = (err: unknown): void => {
    logger?.error({ channel, err: err instanceof Error ? err.message : String(err) }, 'bus handler failed');
  };
  try {
    const result: unknown = handler(message);
    if (result instanceof Promise) result.catch(report);
  } catch (err) {
    report(err);
  }
}

/** Throws a TypeError unless `channel` is a non-empty string of at most 1024 characters (every bus checks before sending). */
export function assertValidChannel(channel: string): void {
  if (typeof channel !== 'string' || channel.length === 0 || channel.length > 1024) {
    throw new TypeError(`invalid bus channel ${JSON.stringify(channel)}: a non-empty string of at most 1024 characters`);
  }
}

/** In-process implementation, for file storage in a single process (and tests). */
export class LocalBus implements ClusterBus {
  readonly #channels = new Map<string, Set<(message: string) => void>>();

  constructor(private readonly logger?: Logger) {}

  async publish(channel: string, message: string): Promise<void> {
    assertValidChannel(channel);
    const handlers = this.#channels.get(channel);
    if (handlers === undefined) return;
    // Delivered asynchronously (like a network bus), to the subscribers present right now; a
    // handler unsubscribed before its turn is skipped.
    for (const handler of [...handlers]) {
      queueMicrotask(() => {
        if (this.#channels.get(channel)?.has(handler)) deliverSafely(handler, message, channel, this.logger);
      });
    }
  }

  async subscribe(channel: string, handler: (message: string) => void): Promise<() => Promise<void>> {
    assertValidChannel(channel);
    // A wrapper per subscription, so the same function subscribed twice is two subscriptions.
    const entry = (message: string): void => handler(message);
    let handlers = this.#channels.get(channel);
    if (handlers === undefined) {
      handlers = new Set();
      this.#channels.set(channel, handlers);
    }
    handlers.add(entry);
    return async () => {
      const current = this.#channels.get(channel);
      if (current === undefined) return;
      current.delete(entry);
      if (current.size === 0) this.#channels.delete(channel);
    };
  }
}
