// Certificate events of every process reach the admin API's event stream: each gateway process
// publishes its CertificateEvents on the cluster bus (channel `certificate-events`), and the
// admin API (one per instance, in worker 0) streams what it hears. With workers, worker 1's
// issuances then show up too; on Redis, every instance's do, each tagged with `instance`.
// Delivery is at most once, like the bus: the stream is for watching, not an audit log.
import { hostname } from 'node:os';
import type { CertificateEvent, CertificateEvents } from '../events.ts';
import type { Logger } from '../log.ts';
import type { ClusterBus } from '../storage/bus.ts';

/** The bus channel certificate events travel on to the admin API's event stream. */
export const EVENTS_CHANNEL = 'certificate-events';

/** A certificate event as relayed: with the id of the instance (process) it happened in. */
export type RelayedEvent = CertificateEvent & { instance: string };

/** Publishes this process's events; returns a function that stops it. */
export function relayEvents(events: CertificateEvents, bus: ClusterBus, logger: Logger): () => void {
  const instance = `${hostname()}:${process.pid}`;
  return events.on((event) => {
    bus.publish(EVENTS_CHANNEL, JSON.stringify({ ...event, instance })).catch((err: unknown) => {
      logger.debug({ domain: event.domain, step: 'event-relay', err }, 'could not relay a certificate event');
    });
  });
}

/** Hears every process's events; resolves to an unsubscribe function. */
export function onRelayedEvents(bus: ClusterBus, handler: (event: RelayedEvent) => void): Promise<() => Promise<void>> {
  return bus.subscribe(EVENTS_CHANNEL, (raw) => {
    let event: RelayedEvent;
    try {
      event = JSON.parse(raw) as RelayedEvent;
    } catch {
      return;
    }
    if (typeof event.type === 'string' && typeof event.domain === 'string') handler(event);
  });
}
