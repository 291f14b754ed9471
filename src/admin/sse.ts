// Server-Sent Events for the admin API: one EventStream fans events out to every connected
// client. A comment line every keepAliveMs keeps proxies and load balancers from closing an idle
// stream. Each client's unsent output is bounded: a client that stops reading (its socket buffer
// over maxBufferedBytes) is disconnected rather than buffered without limit, and the number of
// clients is capped (maxClients), so idle streams cannot pile up sockets and memory.
import type { ServerResponse } from 'node:http';

/** Limits of one event stream; the defaults suit the admin API. */
export interface EventStreamOptions {
  keepAliveMs?: number;
  maxBufferedBytes?: number;
  /** Most clients connected at once (admin.maxEventClients); default 100. */
  maxClients?: number;
}

/**
 * Server-Sent Events to many clients. `add` refuses a client over `maxClients` (the caller
 * answers 503); a client that stops reading is dropped once `maxBufferedBytes` pile up.
 */
export class EventStream {
  readonly #clients = new Set<ServerResponse>();
  readonly #maxBuffered: number;
  readonly #maxClients: number;
  readonly #timer: NodeJS.Timeout;
  #nextId = 1;

  constructor(opts: EventStreamOptions = {}) {
    this.#maxBuffered = opts.maxBufferedBytes ?? 1024 * 1024;
    this.#maxClients = opts.maxClients ?? 100;
    this.#timer = setInterval(() => this.#writeAll(': keep-alive\n\n'), opts.keepAliveMs ?? 15_000);
    this.#timer.unref();
  }

  get clients(): number {
    return this.#clients.size;
  }

  /** The cap on clients connected at once. */
  get maxClients(): number {
    return this.#maxClients;
  }

  /**
   * Takes over a response: headers now, then events until the client goes away. Returns false,
   * leaving `res` untouched for the caller to answer, when maxClients are already connected.
   */
  add(res: ServerResponse): boolean {
    if (this.#clients.size >= this.#maxClients) return false;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.write(': certgate events\n\n');
    this.#clients.add(res);
    res.on('close', () => this.#clients.delete(res));
    return true;
  }

  /** `type` becomes the SSE event name; `data` is sent as one JSON line. */
  send(type: string, data: unknown): void {
    if (this.#clients.size === 0) return;
    this.#writeAll(`id: ${this.#nextId++}\nevent: ${type}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  close(): void {
    clearInterval(this.#timer);
    for (const res of this.#clients) res.end();
    this.#clients.clear();
  }

  #writeAll(chunk: string): void {
    for (const res of this.#clients) {
      if (res.writableLength > this.#maxBuffered) {
        // Too far behind: drop this client (it can reconnect) instead of growing memory.
        this.#clients.delete(res);
        res.destroy();
        continue;
      }
      res.write(chunk);
    }
  }
}
