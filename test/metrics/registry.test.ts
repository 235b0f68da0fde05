/**
 * The metrics module on its own: labels only from fixed sets, and counters read from
 * native FUSE sessions that never go down when a session ends.
 */
import { describe, expect, it } from 'vitest';
import {
  addNativeFuseSession, codeLabel, commitFinished, fuseError, fuseRequest, registry, storeOperation, type NativeFuseCounters,
} from '../../src/metrics/index.js';

async function value(name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = await registry.getSingleMetric(name)!.get();
  const hit = m.values.find((v) => Object.keys(labels).every((k) => (v.labels as Record<string, unknown>)[k] === labels[k]) && Object.keys(v.labels).length === Object.keys(labels).length);
  return hit?.value ?? 0;
}

describe('metrics', () => {
  it('takes label values only from fixed sets', async () => {
    expect(codeLabel('OPEN_HANDLES')).toBe('OPEN_HANDLES');
    expect(codeLabel('/ck/a/model.bin')).toBe('INTERNAL');
    expect(storeOperation('upload-part')).toBe('upload-part');
    expect(storeOperation('objects/ab/abcdef')).toBe('other');
    commitFinished('failed', 'not a code');
    expect(await value('roset_commits_total', { status: 'failed', code: 'INTERNAL' })).toBe(1);
    commitFinished('completed', 'OPEN_HANDLES');
    expect(await value('roset_commits_total', { status: 'completed', code: 'none' })).toBe(1);
    fuseRequest('/etc/passwd');
    fuseError('rsk_secret');
    expect(await value('roset_fuse_requests_total', { operation: 'other' })).toBe(1);
    expect(await value('roset_fuse_errors_total', { code: 'other' })).toBe(1);
    const text = await registry.metrics();
    expect(text).not.toContain('passwd');
    expect(text).not.toContain('rsk_');
  });

  it('adds the C counters of live sessions, and keeps those of ended ones', async () => {
    const c: NativeFuseCounters = { reads: 5, writes: 7, bytesWritten: 7 << 20, flushesLocal: 2, errors: { EBADF: 1, EIO: 0 } };
    const session = addNativeFuseSession(() => c);
    fuseRequest('read'); // fuse-native's, counted in JavaScript
    expect(await value('roset_fuse_requests_total', { operation: 'read' })).toBe(6);
    expect(await value('roset_fuse_requests_total', { operation: 'write' })).toBe(7);
    expect(await value('roset_fuse_requests_total', { operation: 'flush' })).toBe(2);
    expect(await value('roset_fuse_errors_total', { code: 'EBADF' })).toBe(1);
    expect(await value('roset_staged_bytes_total')).toBe(7 << 20);
    c.writes = 9;
    session.retire();
    c.writes = 1000; // a retired session is no longer read
    expect(await value('roset_fuse_requests_total', { operation: 'write' })).toBe(9);
    const gone = addNativeFuseSession(() => { throw new Error('unmounted'); });
    expect(await value('roset_fuse_requests_total', { operation: 'write' })).toBe(9);
    gone.retire();
  });
});
