// Certificate events of every process reach the admin API's event stream: each gateway process
// publishes its CertificateEvents on the cluster bus (channel `certificate-lifecycle`), and the
// admin API (one per instance, in worker 0) streams what it hears. With workers, worker 1's
// issuances then show up too; on Redis, every instance's do, each tagged with `instance`.
// Delivery is at most once, like the bus: the stream is for watching, not an audit log.
import { hostname } from 'node:os';
import type { CertificateEvent, CertificateEvents } from '../issuance/events.ts';
import type { Logger } from '../util/log.ts';
import type { ClusterBus } from '../storage/bus.ts';
import { channel, withStringField, type Channel } from '../util/channel.ts';

/** The bus channel carrying every process's lifecycle events (RelayedEvent) to the admin API. */
export const EVENTS_CHANNEL = 'certificate-lifecycle';

/** A lifecycle event as relayed: tagged with the `instance` (host:pid) that emitted it. */
export type RelayedEvent = CertificateEvent & { instance: string };

function lifecycleChannel(bus: ClusterBus): Channel<RelayedEvent> {
  return channel(bus, EVENTS_CHANNEL, (value) => (withStringField(value, 'type') && withStringField(value, 'domain') ? (value as RelayedEvent) : undefined));
}

/** Publishes this process's events; returns a function that stops it. */
export function relayEvents(events: CertificateEvents, bus: ClusterBus, logger: Logger): () => void {
  const instance = `${hostname()}:${process.pid}`;
  const lifecycle = lifecycleChannel(bus);
  return events.on((event) => {
    lifecycle.publish({ ...event, instance }).catch((err: unknown) => {
      logger.debug({ domain: event.domain, step: 'event-relay', err }, 'could not relay a certificate event');
    });
  });
}

/** Hears every process's events; resolves to an unsubscribe function. */
export function onRelayedEvents(bus: ClusterBus, handler: (event: RelayedEvent) => void): Promise<() => Promise<void>> {
  return lifecycleChannel(bus).subscribe(handler);
}
