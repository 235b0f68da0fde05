/**
 * Identifier generation. Ids sort by creation time (a millisecond timestamp prefix),
 * so listings and bucket keys read in order, and carry 64 random bits against clashes.
 */
import { randomBytes } from 'node:crypto';

export function newId(): string {
  return `${Date.now().toString(36).padStart(9, '0')}${randomBytes(8).toString('hex')}`;
}

export const ids = {
  mount: () => `mnt_${newId()}`,
  commit: () => `cmt_${newId()}`,
  group: () => `grp_${newId()}`,
  apiKey: () => `key_${newId()}`,
};
