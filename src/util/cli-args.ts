/**
 * Parsers for command-line and environment values, shared by `roset-mount`, `roset`
 * and `npm run bench`: each returns the value or throws commander's
 * InvalidArgumentError, whose message commander prints with the flag's name.
 */
import { InvalidArgumentError } from 'commander';

/** A positive number of seconds (timeouts and intervals on the command line). */
export function seconds(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('expected a positive number of seconds');
  return n;
}

export function positive(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('expected a positive number');
  return n;
}

export function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('expected a positive whole number');
  return n;
}

/** `10G`, `512MiB`, `1.5T`, or plain bytes; binary units. */
export function size(v: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?$/i.exec(v.trim());
  if (!m) throw new InvalidArgumentError('expected a size such as 50G, 512M or 1073741824');
  const exp = ' KMGT'.indexOf((m[2] || ' ').toUpperCase());
  return Math.floor(Number(m[1]) * 1024 ** exp);
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** `7d`, `24h`, `30m`, `90s`, `500ms`, `1h30m`, or `0`; in milliseconds. */
export function duration(v: string): number {
  const t = v.trim();
  if (t === '0') return 0;
  const parts = [...t.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join('') !== t) throw new InvalidArgumentError('expected a duration such as 7d, 24h, 30m, 90s or 0');
  return parts.reduce((ms, p) => ms + Number(p[1]) * DURATION_UNITS[p[2]!]!, 0);
}

/** A whole number ≥ 0. */
export function wholeNumber(v: string): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isInteger(n) || n < 0) throw new InvalidArgumentError('expected a whole number >= 0');
  return n;
}
