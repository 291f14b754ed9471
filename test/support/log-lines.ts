// A pino logger whose JSON lines are kept in memory, parsed, for assertions on what was logged.
import { pino, type Logger } from 'pino';

export type LogLine = Record<string, unknown> & { msg?: string; step?: string; domain?: string; time?: number };

export function capturingLogger(level = 'debug'): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const logger = pino({ level }, { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) });
  return { logger, lines };
}
