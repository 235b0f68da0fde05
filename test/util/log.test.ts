/**
 * Log lines: JSON for machines, one readable line per record for a person watching a
 * daemon in the foreground; which one, from the flag, ROSET_LOG_FORMAT or the terminal.
 */
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { formatRecord, resolveLogFormat, textStream } from '../../src/util/log.js';

describe('log format', () => {
  it('is text on a terminal and JSON otherwise, unless the flag or ROSET_LOG_FORMAT says', () => {
    expect(resolveLogFormat(undefined, undefined, true)).toBe('text');
    expect(resolveLogFormat(undefined, undefined, false)).toBe('json');
    expect(resolveLogFormat(undefined, '', false)).toBe('json');
    expect(resolveLogFormat(undefined, 'text', false)).toBe('text');
    expect(resolveLogFormat(undefined, 'json', true)).toBe('json');
    expect(resolveLogFormat('json', 'text', true)).toBe('json');
    expect(resolveLogFormat('text', 'json', false)).toBe('text');
    expect(() => resolveLogFormat(undefined, 'yaml', true)).toThrow(/json or text/);
  });

  it('prints a record as time, level, message and key=value, credentials still redacted', () => {
    const lines: string[] = [];
    const log = pino({ level: 'debug', base: { pid: 1 }, redact: { paths: ['apiKey'], censor: '[redacted]' } }, textStream((s) => lines.push(s)));
    log.child({ commitId: 'cmt_1' }).info({ path: '/ck pt', files: 3, apiKey: 'rsk_secret' }, 'commit completed');
    log.warn('plain');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^\d\d:\d\d:\d\d\.\d{3} INFO  commit completed commitId=cmt_1 path="\/ck pt" files=3 apiKey=\[redacted\]\n$/);
    expect(lines[1]).toMatch(/^\d\d:\d\d:\d\d\.\d{3} WARN  plain\n$/);
    expect(lines.join('')).not.toContain('rsk_secret');
  });

  it('colours the level only when asked, and passes through what is not JSON', () => {
    expect(formatRecord('{"level":50,"time":0,"msg":"boom"}', true)).toContain('\x1b[31mERROR\x1b[0m boom');
    expect(formatRecord('{"level":50,"time":0,"msg":"boom"}')).not.toContain('\x1b');
    expect(formatRecord('not json')).toBe('not json\n');
  });
});
