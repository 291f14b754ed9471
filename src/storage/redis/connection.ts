// Connection health of the Redis backend: which errors mean "Redis is unreachable", time limits
// on every round trip, and ConnectionHealth, which turns node-redis' per-connection events into
// one warn line when the first connection drops and one info line when the last is back (and
// tells RedisStorage, which fails commands fast while down and re-arms subscriptions after).
// The clients reconnect by themselves (100 ms doubling to 2 s, plus jitter).
import type { EventEmitter } from 'node:events';

import {
  ClientClosedError,
  ClientOfflineError,
  ConnectionTimeoutError,
  RootNodesUnavailableError,
  SocketClosedUnexpectedlyError,
  TimeoutError,
} from 'redis';

import type { Logger } from '../../util/log.ts';

/** How often to check whether a Sentinel-managed master is reachable again. */
const PROBE_INTERVAL_MS = 500;

/** Reconnect backoff for node-redis' reconnectStrategy: 100 ms doubling to 2 s, plus up to 100 ms of jitter. */
export function reconnectDelay(retries: number): number {
  return Math.min(100 * 2 ** Math.min(retries, 10), 2_000) + Math.floor(Math.random() * 100);
}

/** A command that got no answer within the command time limit (a connection error: isConnectionError). */
export class CommandTimeout extends Error {
  constructor(ms: number) {
    super(`Redis did not answer within ${ms} ms`);
    this.name = 'CommandTimeout';
  }
}

/** The message of an error for a log line or a StorageError (an AggregateError lists its parts). */
export function errorMessage(err: unknown): string {
  if (err instanceof AggregateError && err.errors.length > 0) return err.errors.map(errorMessage).join('; ');
  return err instanceof Error ? err.message || err.name : String(err);
}

/** Errors that mean "no usable connection to Redis" rather than "Redis refused the command". */
export function isConnectionError(err: unknown): boolean {
  return (
    err instanceof ClientOfflineError ||
    err instanceof ClientClosedError ||
    err instanceof SocketClosedUnexpectedlyError ||
    err instanceof ConnectionTimeoutError ||
    err instanceof RootNodesUnavailableError ||
    err instanceof TimeoutError ||
    err instanceof CommandTimeout ||
    (err instanceof Error && 'code' in err && typeof err.code === 'string' && /^E[A-Z]+$/.test(err.code)) ||
    err instanceof AggregateError
  );
}

/** Races `promise` against a timer; the loser's outcome is ignored (the race handles it). */
export async function withTimeout<T>(promise: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}


/**
 * Tracks which connections are down, to log one warn line when the first drops and one info
 * line when the last is back, however many reconnect attempts happen in between.
 */
export class ConnectionHealth {
  readonly #down = new Map<string, string>();
  #downSince = 0;
  #armed = false;
  #stopped = false;
  #probeTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly logger: Logger,
    private readonly redis: string,
    private readonly onDown: () => void,
    private readonly onRestored: () => void,
    /** For drivers without reliable "ready" events (Sentinel): resolves once Redis answers. */
    private readonly probe?: () => Promise<unknown>,
  ) {}

  /** Called once the initial connection is up; events before that belong to connect(). */
  arm(): void {
    this.#armed = true;
    this.#down.clear();
  }

  /** Stops logging and probing for good (the storage is closing or failed to connect). */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#probeTimer);
  }

  /** True while any connection is known to be down (RedisStorage then fails commands fast in Sentinel mode). */
  get isDown(): boolean {
    return this.#down.size > 0;
  }

  /** A connection error event: logged at debug level (down() says what matters, once). */
  error(source: string, err: unknown): void {
    if (this.#stopped) return;
    this.logger.debug({ redis: this.redis, connection: source, err: errorMessage(err) }, 'redis connection error');
  }

  /** Connection `source` dropped: the first one down logs a warning and calls onDown (and starts the probe, if any). */
  down(source: string, reason: string): void {
    if (!this.#armed || this.#stopped || this.#down.has(source)) return;
    this.#down.set(source, reason);
    if (this.#down.size > 1) return;
    this.#downSince = Date.now();
    this.logger.warn(
      { redis: this.redis, connection: source, err: reason },
      'Redis connection lost; reconnecting in the background, storage operations fail until it is back',
    );
    this.onDown();
    if (this.probe) this.scheduleProbe();
  }

  /** Connection `source` is ready again: the last one back logs once and calls onRestored. */
  up(source: string): void {
    if (!this.#down.delete(source) || this.#down.size > 0) return;
    this.restored();
  }

  private restored(): void {
    this.#down.clear();
    clearTimeout(this.#probeTimer);
    if (this.#stopped) return;
    this.logger.info({ redis: this.redis, downMs: Date.now() - this.#downSince }, 'Redis connection restored');
    this.onRestored();
  }

  private scheduleProbe(): void {
    clearTimeout(this.#probeTimer);
    this.#probeTimer = setTimeout(() => {
      if (this.#stopped || !this.isDown || !this.probe) return;
      this.probe().then(
        () => this.restored(),
        () => this.scheduleProbe(),
      );
    }, PROBE_INTERVAL_MS);
    this.#probeTimer.unref();
  }
}

/** Wires a node-redis client's events to the health tracker. */
export function watchClient(client: EventEmitter, source: string, health: ConnectionHealth): void {
  let lastError = 'connection closed';
  client.on('error', (err: unknown) => {
    lastError = errorMessage(err);
    health.error(source, err);
  });
  client.on('reconnecting', () => health.down(source, lastError));
  client.on('ready', () => health.up(source));
}
