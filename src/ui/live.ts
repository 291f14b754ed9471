// Live updates inside the dashboard: the one event stream the app follows (api.ts followEvents)
// is fanned out here to whichever views are mounted, and a throttle keeps a burst of events
// (a renewal wave at 100,000 names) from turning into a burst of reloads.
import { useCallback, useEffect, useRef } from 'preact/hooks';
import type { SseMessage } from './sse.ts';

/** An event of GET /v1/events: its type and its JSON data (certificate events carry `domain`, binding changes `name`). */
export interface LiveEvent {
  type: string;
  data: Record<string, unknown>;
}

const listeners = new Set<(event: LiveEvent) => void>();

/** Hands one stream message to every mounted listener; a message that is not JSON is dropped. */
export function publish(message: SseMessage): void {
  let data: Record<string, unknown>;
  try {
    data = JSON.parse(message.data) as Record<string, unknown>;
  } catch {
    return;
  }
  for (const listener of listeners) listener({ type: message.event, data });
}

/** The name an event is about. */
export const eventName = (event: LiveEvent): string => String(event.data.domain ?? event.data.name ?? '');

/** Calls `handler` (the latest one passed) for every live event while the component is mounted. */
export function useLive(handler: (event: LiveEvent) => void): void {
  const ref = useRef(handler);
  ref.current = handler;
  useEffect(() => {
    const listener = (event: LiveEvent) => ref.current(event);
    listeners.add(listener);
    return () => void listeners.delete(listener);
  }, []);
}

/**
 * A function that runs `fn` (the latest one passed) at most once per `ms`: the first call is run
 * at once, calls meanwhile collapse into one run at the end of the interval.
 */
export function useThrottle(fn: () => void, ms: number): () => void {
  const ref = useRef(fn);
  ref.current = fn;
  const state = useRef<{ timer: number | undefined; last: number }>({ timer: undefined, last: 0 });
  useEffect(() => () => clearTimeout(state.current.timer), []);
  return useCallback(() => {
    const s = state.current;
    if (s.timer !== undefined) return;
    s.timer = window.setTimeout(
      () => {
        s.timer = undefined;
        s.last = Date.now();
        ref.current();
      },
      Math.max(0, s.last + ms - Date.now()),
    );
  }, [ms]);
}
