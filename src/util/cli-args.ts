/**
 * Parsers for command-line and environment values, shared by `roset-mount`, `roset`
 * and `npm run bench`: each returns the value or throws commander's
 * InvalidArgumentError, whose message commander prints with the flag's name.
 */
import { InvalidArgumentError } from 'commander';

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
