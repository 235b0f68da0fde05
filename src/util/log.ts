/**
 * Logging: pino, JSON lines on stderr (what journald and log shippers want).
 * Invariant: nothing logs credentials; the redact list is a second line of defence for
 * fields that could carry them.
 */
import pino, { type Logger } from 'pino';

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export function createLogger(level: LogLevel = 'info'): Logger {
  return pino({
    level,
    base: { pid: process.pid },
    redact: { paths: ['apiKey', 'token', 'authorization', 'headers.authorization', 'credentials', 'secretAccessKey', '*.secretAccessKey'], censor: '[redacted]' },
  }, pino.destination({ fd: 2, sync: false }));
}
