import { writeSync } from 'node:fs';
import { pino, type Logger, type LoggerOptions } from 'pino';

export type { Logger };

/** How createLogger writes: level (default info) and where to. */
export interface LogOptions {
  level?: string;
  /** Write to this file descriptor instead of stdout (2 = stderr). */
  fd?: number;
}

/** Loggers whose line format createAccessLog reproduces (see there). */
const ownFormat = new WeakSet<Logger>();

/** One JSON line per event. Every issuance step logs domain, step, ca and elapsed ms. */
export function createLogger(opts: LogOptions = {}): Logger {
  const options: LoggerOptions = {
    level: process.env.CERTGATE_LOG_LEVEL || opts.level || 'info',
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  };
  const logger = pino(options, pino.destination({ fd: opts.fd ?? 1, sync: false }));
  ownFormat.add(logger);
  return logger;
}

/**
 * Resolves once the logger's destination has no asynchronous write in flight (at most
 * `maxWaitMs`): call before process.exit, which would drop such a write (pino's exit hook only
 * writes what is still queued). Never rejects.
 */
export async function logWritten(logger: Logger, maxWaitMs = 1000): Promise<void> {
  const stream = (logger as unknown as Record<symbol, BatchDestination | undefined>)[pino.symbols.streamSym];
  const deadline = Date.now() + maxWaitMs;
  while (stream?._writing === true && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 1));
}

/** A logger that drops everything, for tests and library use. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

/** One proxied request as the access log writes it (the fields, in this order, of an `access` line). */
export interface AccessEntry {
  host: string | null;
  client: string | null;
  method: string | undefined;
  path: string | undefined;
  status: number;
  upstream: string | null;
  /** From the request's arrival to the end (or abort) of the response, rounded to 0.1 ms. */
  ms: number;
  bytes: number;
  /** Left out when undefined. */
  error?: string | undefined;
  /** Left out unless true. */
  aborted?: boolean;
}

/** The proxy's access log: one JSON line per request, buffered; flush() before exit. */
export interface AccessLog {
  /** Logs one `access` line at info level; undefined fields are left out. */
  write(fields: Record<string, unknown>): void;
  /** The same line as write(entry) would, built without a generic walk over the fields (the hot path). */
  request(entry: AccessEntry): void;
  /** Writes buffered lines out now, synchronously (graceful stop, exit, tests). */
  flush(): void;
}

/** Buffered lines are handed to the destination once they reach this many characters… */
export const ACCESS_BATCH_CHARS = 64 * 1024;
/** …or this long after the first of them was written, whichever comes first. */
export const ACCESS_BATCH_MS = 100;

/**
 * The access log: one line per request, the hot path of a busy gateway. It writes exactly what
 * `logger.child(bindings).info(fields, 'access')` would (test/util/access-log.test.ts), but:
 *   1. builds the line itself: request() with fixed fields in a fixed order, strings escaped
 *      only when they need it, the time string made once per millisecond (toISOString costs
 *      more than the rest of the line);
 *   2. hands lines to pino's destination in batches of ACCESS_BATCH_CHARS, at the latest
 *      ACCESS_BATCH_MS after the first: one write syscall per ~300 lines, not one per event-loop
 *      turn, which also spares whatever reads the log (a pipe to journald or a collector);
 *   3. flush() writes the batch out synchronously (the proxy's close() calls it on a graceful
 *      stop; an asynchronous write still in flight when the process exits would be lost), and
 *      an 'exit' listener does the same for a process that exits without a close (a batch
 *      already in an asynchronous write then may land after those lines: it cannot be waited
 *      for there).
 * Loggers not made by createLogger go through pino, line by line.
 */
export function createAccessLog(logger: Logger, bindings: Record<string, unknown>): AccessLog {
  const child = logger.child(bindings);
  const stream = (child as unknown as Record<symbol, BatchDestination | undefined>)[pino.symbols.streamSym];
  const chindings = (child as unknown as Record<symbol, unknown>)[pino.symbols.chindingsSym];
  if (!ownFormat.has(logger) || !stream || typeof chindings !== 'string') {
    return { write: (fields) => child.info(fields, 'access'), request: (entry) => child.info({ ...entry, aborted: entry.aborted || undefined }, 'access'), flush: () => {} };
  }
  const head = `{"level":"info","time":"`;
  let pending = '';
  let timer: NodeJS.Timeout | undefined;
  let lastMs = -1;
  let lastTime = '';
  const time = (): string => {
    const now = Date.now();
    if (now !== lastMs) {
      lastMs = now;
      lastTime = new Date(now).toISOString();
    }
    return lastTime;
  };
  /** The batched lines, taken out (the timer stopped); '' when there are none. */
  const take = (): string => {
    if (timer !== undefined) {
      clearTimeout(timer);
      timer = undefined;
    }
    const lines = pending;
    pending = '';
    return lines;
  };
  const handOver = (): void => {
    const lines = take();
    if (lines !== '') stream.write(lines);
  };
  const flush = (): void => {
    const lines = take();
    if (lines !== '') writeOutNow(stream, lines);
  };
  const add = (line: string): void => {
    pending += line;
    if (pending.length >= ACCESS_BATCH_CHARS) handOver();
    else if (timer === undefined) {
      timer = setTimeout(handOver, ACCESS_BATCH_MS);
      timer.unref();
    }
  };
  const log: AccessLog = {
    write(fields) {
      if (!child.isLevelEnabled('info')) return;
      let line = `${head}${time()}"${chindings}`;
      for (const key in fields) {
        const value = fields[key];
        if (value !== undefined) line += `,${JSON.stringify(key)}:${JSON.stringify(value)}`;
      }
      add(`${line},"msg":"access"}\n`);
    },
    request(e) {
      if (!child.isLevelEnabled('info')) return;
      let line = `${head}${time()}"${chindings},"host":${jsonString(e.host)},"client":${jsonString(e.client)}`;
      if (e.method !== undefined) line += `,"method":${jsonString(e.method)}`;
      if (e.path !== undefined) line += `,"path":${jsonString(e.path)}`;
      line += `,"status":${jsonNumber(e.status)},"upstream":${jsonString(e.upstream)},"ms":${jsonNumber(e.ms)},"bytes":${jsonNumber(e.bytes)}`;
      if (e.error !== undefined) line += `,"error":${jsonString(e.error)}`;
      if (e.aborted) line += `,"aborted":true`;
      add(`${line},"msg":"access"}\n`);
    },
    flush,
  };
  flushAtExit(log);
  return log;
}

/** What createAccessLog needs of pino's destination (a SonicBoom; `_writing`: a write in flight). */
interface BatchDestination {
  write(s: string): unknown;
  flushSync?: () => void;
  fd?: number;
  _writing?: boolean;
}

/**
 * `lines` written to the destination synchronously: straight to its file descriptor when it has
 * nothing in flight (so they cannot end up in an asynchronous write), else queued behind the write
 * in flight and the queue written synchronously. Never throws.
 */
function writeOutNow(stream: BatchDestination, lines: string): void {
  try {
    if (stream._writing === false && typeof stream.fd === 'number' && stream.fd >= 0) {
      writeAllSync(stream.fd, Buffer.from(lines));
      return;
    }
    stream.write(lines);
    stream.flushSync?.();
  } catch {
    // The destination is gone or not ready: nothing more can be done for these lines.
  }
}

/** All of `data` to `fd`, across partial writes and EAGAIN (a full non-blocking pipe), for at most ~2 s. */
function writeAllSync(fd: number, data: Buffer): void {
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (let offset = 0, tries = 0; offset < data.length; ) {
    try {
      offset += writeSync(fd, data, offset);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN' || ++tries > 2000) throw err;
      Atomics.wait(pause, 0, 0, 1);
    }
  }
}

// Access logs whose batches an 'exit' listener writes out synchronously (one listener for all;
// weak, so a closed and dropped access log is not kept alive by it).
const atExit = new Set<WeakRef<AccessLog>>();
let exitListener = false;

function flushAtExit(log: AccessLog): void {
  if (!exitListener) {
    exitListener = true;
    process.once('exit', () => {
      for (const ref of atExit) {
        const held = ref.deref();
        if (!held) continue;
        held.flush();
      }
    });
  }
  for (const ref of atExit) if (!ref.deref()) atExit.delete(ref);
  atExit.add(new WeakRef(log));
}

// Characters JSON must escape (and U+2028/2029, which pino escapes too): rare in log fields.
// eslint-disable-next-line no-control-regex -- control characters are exactly what must be escaped
const NEEDS_ESCAPE = /["\\\u0000-\u001f\u2028\u2029\ud800-\udfff]/;

/** `value` as JSON: short clean strings without JSON.stringify, null for null. */
function jsonString(value: string | null): string {
  if (value === null) return 'null';
  return value.length < 100 && !NEEDS_ESCAPE.test(value) ? `"${value}"` : JSON.stringify(value);
}

/** A number as JSON (null for NaN/Infinity, as JSON.stringify writes them). */
function jsonNumber(value: number): string {
  return Number.isFinite(value) ? String(value) : 'null';
}
