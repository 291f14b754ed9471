// Redis pub/sub for the backend: the ClusterBus channels (`<prefix>bus:<channel>`) and the lock
// release notifications (a lock key's own name). node-redis re-subscribes every channel on
// reconnect; messages published while an instance was disconnected are lost for it (delivery
// is at most once, as ClusterBus says). An unsubscription that fails while Redis is down is
// kept and retried once the connection is back (the listener is silenced at once either way).
import { ClientOfflineError } from 'redis';

import type { Logger } from '../../util/log.ts';
import { errorMessage } from './connection.ts';
import type { Driver, PubSubListener, RunCommand } from './drivers.ts';

/** The Redis channel of ClusterBus channel `channel` under `prefix`. */
export function busChannel(prefix: string, channel: string): string {
  return `${prefix}bus:${channel}`;
}

/** Subscriptions to full Redis channel names, with unsubscriptions that survive an outage. */
export class RedisSubscriptions {
  /** Unsubscriptions that failed (Redis was down); retried when the connection is back. */
  #orphans: Array<{ channel: string; listener: PubSubListener }> = [];

  /** `run` is RedisStorage's command runner; `isClosed` stops retries once the storage is closed. */
  constructor(
    private readonly driver: Driver,
    private readonly run: RunCommand,
    private readonly logger: Logger,
    private readonly isClosed: () => boolean,
  ) {}

  /**
   * Subscribes `onMessage` to a full channel name; resolves once Redis confirmed. The returned
   * function unsubscribes; it never throws, and if Redis is down the unsubscription is retried
   * on reconnect (the listener is silenced at once either way).
   */
  async subscribe(
    channel: string,
    onMessage: (message: string) => void,
    step: string,
    key: string,
  ): Promise<() => Promise<void>> {
    let active = true;
    const listener: PubSubListener = (message) => {
      if (active) onMessage(message);
    };
    try {
      await this.run(step, key, async () => {
        if (!this.driver.pubSubReady()) throw new ClientOfflineError();
        await this.driver.subscribe(channel, listener);
      });
    } catch (err) {
      active = false;
      void this.unsubscribeQuietly(channel, listener);
      throw err;
    }
    return async () => {
      if (!active) return;
      active = false;
      await this.unsubscribeQuietly(channel, listener);
    };
  }

  private async unsubscribeQuietly(channel: string, listener: PubSubListener): Promise<void> {
    if (this.isClosed()) return;
    if (!this.driver.pubSubReady()) {
      // node-redis would queue it; the listener is silent already, so unsubscribe once back.
      this.#orphans.push({ channel, listener });
      return;
    }
    try {
      await this.run('unsubscribe', channel, () => this.driver.unsubscribe(channel, listener));
    } catch (err) {
      if (this.isClosed()) return;
      this.logger.debug({ channel, err: errorMessage(err) }, 'redis: unsubscribe failed; retrying after reconnect');
      this.#orphans.push({ channel, listener });
    }
  }

  /** Retries the unsubscriptions that failed while Redis was down; call when it is back. */
  retryOrphans(): void {
    const orphans = this.#orphans;
    this.#orphans = [];
    for (const { channel, listener } of orphans) void this.unsubscribeQuietly(channel, listener);
  }
}
