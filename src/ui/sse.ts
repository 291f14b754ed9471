// Server-Sent Events parsing for the dashboard's live updates. The browser's EventSource cannot
// send an Authorization header, and the admin token must never go into a URL, so the dashboard
// reads GET /v1/events with fetch() (header included) and parses the stream here, by the WHATWG
// rules: lines end in \n, \r\n or \r; `:` lines are comments (keep-alives); a blank line ends
// a message; `retry` is ignored (the dashboard picks its own reconnect delays). Pure code, no DOM:
// tested under node (test/ui/sse.test.ts).

/** One Server-Sent Event: its `event` name ("message" when unnamed), `data` lines joined with \n, its `id`. */
export interface SseMessage {
  event: string;
  data: string;
  id?: string;
}

/**
 * Incremental parser: `push` each decoded chunk as it arrives, in order, and get the messages
 * it completed. Chunks may split lines, even a \r\n pair, anywhere.
 */
export class SseParser {
  #buffer = '';
  #event = '';
  #data: string[] = [];
  #id: string | undefined;
  #skipLf = false;

  /** The messages `chunk` completed (none while a message is still open). */
  push(chunk: string): SseMessage[] {
    if (chunk === '') return [];
    // A chunk that ended in \r may have split a \r\n: its \n is not another line end.
    if (this.#skipLf && chunk.startsWith('\n')) chunk = chunk.slice(1);
    this.#skipLf = false;
    this.#buffer += chunk;
    const out: SseMessage[] = [];
    let start = 0;
    for (;;) {
      const cr = this.#buffer.indexOf('\r', start);
      const lf = this.#buffer.indexOf('\n', start);
      const end = cr < 0 ? lf : lf < 0 ? cr : Math.min(cr, lf);
      if (end < 0) break;
      this.#line(this.#buffer.slice(start, end), out);
      start = end + (end === cr && this.#buffer[cr + 1] === '\n' ? 2 : 1);
      if (end === cr && cr === this.#buffer.length - 1) this.#skipLf = true;
    }
    this.#buffer = this.#buffer.slice(start);
    return out;
  }

  #line(line: string, out: SseMessage[]): void {
    if (line === '') {
      if (this.#data.length > 0) out.push({ event: this.#event || 'message', data: this.#data.join('\n'), ...(this.#id !== undefined ? { id: this.#id } : {}) });
      this.#event = '';
      this.#data = [];
      return;
    }
    if (line.startsWith(':')) return;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') this.#event = value;
    else if (field === 'data') this.#data.push(value);
    else if (field === 'id' && !value.includes('\0')) this.#id = value;
  }
}
