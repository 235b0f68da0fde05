/**
 * Logging: pino. JSON lines on stderr (what journald and log shippers want), or, for a
 * person watching a daemon in the foreground, one readable line per record:
 * `12:03:04.567 INFO  commit completed commitId=cmt_1 path=/ckpt`.
 *
 * The format: `--log-format json|text`, else ROSET_LOG_FORMAT, else text when stderr
 * is a terminal and JSON otherwise. Text comes from a small formatter here (no extra
 * dependency): pino still builds each record as JSON, which is read back and printed.
 *
 * Invariant: nothing logs credentials; the redact list is a second line of defence for
 * fields that could carry them, in either format.
 */
import pino, { type DestinationStream, type Logger } from 'pino';

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
export type LogFormat = 'json' | 'text';
export const LOG_FORMATS: readonly LogFormat[] = ['json', 'text'];

/** The format to use: the flag, else ROSET_LOG_FORMAT, else text on a terminal. */
export function resolveLogFormat(flag: string | undefined, env: string | undefined, stderrIsTty: boolean = Boolean(process.stderr.isTTY)): LogFormat {
  const v = flag ?? (env === undefined || env === '' ? undefined : env);
  if (v === undefined) return stderrIsTty ? 'text' : 'json';
  if (v !== 'json' && v !== 'text') throw new Error(`log format must be json or text, not ${JSON.stringify(v)}`);
  return v;
}

export function createLogger(level: LogLevel = 'info', format: LogFormat = 'json'): Logger {
  const options = {
    level,
    base: { pid: process.pid },
    redact: { paths: ['apiKey', 'token', 'authorization', 'headers.authorization', 'credentials', 'secretAccessKey', '*.secretAccessKey'], censor: '[redacted]' },
  };
  if (format === 'text') return pino(options, textStream((s) => process.stderr.write(s), Boolean(process.stderr.isTTY)));
  return pino(options, pino.destination({ fd: 2, sync: false }));
}

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
const COLORS: Record<number, string> = { 10: '90', 20: '36', 30: '32', 40: '33', 50: '31', 60: '35' };
const SKIP = new Set(['level', 'time', 'pid', 'hostname', 'msg']);

/** A pino destination that prints each JSON record as one readable line. */
export function textStream(write: (s: string) => void, color = false): DestinationStream {
  return { write: (line: string) => write(formatRecord(line, color)) };
}

/** One JSON record as a line: local time, level, message, then key=value for the rest. */
export function formatRecord(line: string, color = false): string {
  let r: Record<string, unknown>;
  try {
    r = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line.endsWith('\n') ? line : `${line}\n`;
  }
  const t = new Date(typeof r.time === 'number' ? r.time : Date.now());
  const time = `${pad(t.getHours())}:${pad(t.getMinutes())}:${pad(t.getSeconds())}.${String(t.getMilliseconds()).padStart(3, '0')}`;
  const n = typeof r.level === 'number' ? r.level : 30;
  const name = (LEVELS[n] ?? String(r.level)).padEnd(5);
  const lvl = color && COLORS[n] ? `\x1b[${COLORS[n]}m${name}\x1b[0m` : name;
  const fields = Object.entries(r).filter(([k]) => !SKIP.has(k)).map(([k, v]) => `${k}=${value(v)}`);
  const msg = typeof r.msg === 'string' ? r.msg : '';
  return `${time} ${lvl} ${[msg, ...fields].filter((s) => s !== '').join(' ')}\n`;
}

function pad(n: number): string {
  return String(n).padStart(2, '0');
}

/** A value as it reads best: plain when it has no spaces or quotes, JSON otherwise. */
function value(v: unknown): string {
  if (typeof v === 'string') return /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v);
  return JSON.stringify(v) ?? String(v);
}
