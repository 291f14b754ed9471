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

/** A logger that drops everything, for tests and library use. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

/** The proxy's access log: one JSON line per request, buffered; flush() before exit. */
export interface AccessLog {
  /** Logs one `access` line at info level; undefined fields are left out. */
  write(fields: Record<string, unknown>): void;
  /** Hands buffered lines to the logger's destination now (before exit). */
  flush(): void;
}

/**
 * The access log: one line per request, the hot path of a busy gateway. It writes exactly what
 * `logger.child(bindings).info(fields, 'access')` would, but builds the line itself and hands
 * the lines of one event-loop turn to the destination in one write: measured at half pino's CPU
 * per line, before counting the saved writes. Loggers not made by createLogger go through pino.
 */
export function createAccessLog(logger: Logger, bindings: Record<string, unknown>): AccessLog {
  const child = logger.child(bindings);
  const stream = (child as unknown as Record<symbol, { write(s: string): unknown } | undefined>)[pino.symbols.streamSym];
  const chindings = (child as unknown as Record<symbol, unknown>)[pino.symbols.chindingsSym];
  if (!ownFormat.has(logger) || !stream || typeof chindings !== 'string') {
    return { write: (fields) => child.info(fields, 'access'), flush: () => {} };
  }
  let pending = '';
  let scheduled = false;
  const flush = () => {
    scheduled = false;
    if (pending === '') return;
    const lines = pending;
    pending = '';
    stream.write(lines);
  };
  return {
    write(fields) {
      if (!child.isLevelEnabled('info')) return;
      let line = `{"level":"info","time":"${new Date().toISOString()}"${chindings}`;
      for (const key in fields) {
        const value = fields[key];
        if (value !== undefined) line += `,${JSON.stringify(key)}:${JSON.stringify(value)}`;
      }
      pending += `${line},"msg":"access"}\n`;
      if (!scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
    },
    flush,
  };
}
