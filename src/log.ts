import { pino, type Logger, type LoggerOptions } from 'pino';

export type { Logger };

export interface LogOptions {
  level?: string;
  /** Write to this file descriptor instead of stdout (2 = stderr). */
  fd?: number;
}

/** One JSON line per event. Every issuance step logs domain, step, ca and elapsed ms. */
export function createLogger(opts: LogOptions = {}): Logger {
  const options: LoggerOptions = {
    level: process.env.CERTGATE_LOG_LEVEL || opts.level || 'info',
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  };
  return pino(options, pino.destination({ fd: opts.fd ?? 1, sync: false }));
}

/** A logger that drops everything, for tests and library use. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
