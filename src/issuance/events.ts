// Certificate lifecycle events, in process: hooks, logs, metrics and the admin API's event
// stream all listen here. Emitting never throws into the emitter: a failing listener is logged.
import type { Logger } from '../util/log.ts';

/** A certificate lifecycle event; `at` is when it was emitted (ISO 8601). */
export type CertificateEvent =
  | { type: 'issuance-started'; domain: string; ca: string; reason: 'on-demand' | 'renewal' | 'admin' | 'managed'; at: string }
  | { type: 'issuance-succeeded'; domain: string; ca: string; notAfter: string; ms: number; challenge?: string; at: string }
  | { type: 'renewed'; domain: string; ca: string; notAfter: string; ms: number; challenge?: string; at: string }
  | { type: 'issuance-failed'; domain: string; ca: string; step: string; error: string; renewal: boolean; at: string }
  | { type: 'deleted'; domain: string; reason: string; at: string };

/** The kinds of certificate events (the SSE event names of GET /v1/events). */
export type CertificateEventType = CertificateEvent['type'];
type Listener = (event: CertificateEvent) => void;

/** Spread over a union: Omit that keeps each member's own fields. */
export type EventInput = CertificateEvent extends infer E ? (E extends CertificateEvent ? Omit<E, 'at'> : never) : never;

/** In-process event emitter: listeners run synchronously; one that throws is logged, never rethrown. */
export class CertificateEvents {
  private readonly listeners = new Set<Listener>();

  constructor(private readonly logger?: Logger) {}

  /** Returns an unsubscribe function. */
  on(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  emit(input: EventInput): void {
    const event = { ...input, at: new Date().toISOString() } as CertificateEvent;
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch (err) {
        this.logger?.warn({ domain: event.domain, step: 'event-listener', event: event.type, err }, 'certificate event listener failed');
      }
    }
  }
}
