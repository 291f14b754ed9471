// One named channel of the cluster bus, typed: messages go out as JSON, and what comes in is
// parsed and checked before a handler sees it. The bus delivers every message to every
// subscriber, the sender included; a channel opened with `dropOwn` stamps what it publishes with
// its own origin and drops those messages when they come back, so a process never acts on its
// own announcement. Delivery stays the bus's: at most once, best effort.
import { randomUUID } from 'node:crypto';

/**
 * The publish/subscribe half of a cluster bus (storage/bus.ts's ClusterBus fits it), named here
 * so util/ needs nothing from the folders above it.
 */
export interface PubSub {
  publish(channel: string, message: string): Promise<void>;
  subscribe(channel: string, handler: (message: string) => void): Promise<() => Promise<void>>;
}

/** A typed view of one bus channel; see channel(). */
export interface Channel<T> {
  /** Sends `message` to every subscriber of the channel; rejects when the bus cannot take it. */
  publish(message: T): Promise<void>;
  /**
   * Calls `handler` with each message that parses (and, with `dropOwn`, that another channel
   * object sent). Resolves to an unsubscribe function.
   */
  subscribe(handler: (message: T) => void): Promise<() => Promise<void>>;
}

/**
 * Opens channel `name` on `bus`. `parse` gets the decoded JSON (of unknown shape: it comes from
 * other processes, perhaps other versions) and returns the message, or undefined to drop it;
 * malformed JSON is dropped before it. With `dropOwn`, messages this channel object published
 * are not delivered back to its own subscribers (open one channel object per instance).
 */
export function channel<T extends object>(bus: PubSub, name: string, parse: (value: unknown) => T | undefined, { dropOwn = false } = {}): Channel<T> {
  const origin = randomUUID();
  return {
    publish: (message) => bus.publish(name, JSON.stringify(dropOwn ? { ...message, origin } : message)),
    subscribe: (handler) =>
      bus.subscribe(name, (raw) => {
        let value: unknown;
        try {
          value = JSON.parse(raw);
        } catch {
          return;
        }
        if (dropOwn && (value as { origin?: unknown } | null)?.origin === origin) return;
        const message = parse(value);
        if (message !== undefined) handler(message);
      }),
  };
}

/** A parse helper: `value` as a record whose `field` is a string, or undefined. */
export function withStringField<K extends string>(value: unknown, field: K): (Record<string, unknown> & Record<K, string>) | undefined {
  return typeof value === 'object' && value !== null && typeof (value as Record<string, unknown>)[field] === 'string' ? (value as Record<string, unknown> & Record<K, string>) : undefined;
}
