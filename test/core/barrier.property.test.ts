/**
 * Property tests of the write barrier and the commit state machine, on the filesystem
 * core without FUSE. For random files, random handles left open across the seal and
 * random late writes through them:
 * - while sealing, every new create, open for writing, truncate, unlink, rename and
 *   mkdir in the folder is refused (SEALED), and a committed folder refuses them
 *   (COMMITTED);
 * - the commit's manifest holds exactly the bytes every file had when its last writer
 *   closed, with their sha256;
 * - a handle never closed fails the commit with OPEN_HANDLES and leaves the folder
 *   STAGING with every byte intact.
 */
import { createHash } from 'node:crypto';
import * as fsSync from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { codeOf, startCore, waitSettled } from '../support/core.js';

const O_WRONLY = fsSync.constants.O_WRONLY;
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

const scenario = fc.record({
  files: fc.uniqueArray(fc.record({ name: fc.stringMatching(/^[a-z]{1,8}$/), data: fc.uint8Array({ maxLength: 5000 }) }), { minLength: 1, maxLength: 6, selector: (f) => f.name }),
  heldOpen: fc.array(fc.nat(), { maxLength: 3 }),
  lateWrites: fc.array(fc.uint8Array({ minLength: 1, maxLength: 2000 }), { maxLength: 3 }),
});

describe('write barrier (property)', () => {
  it('commits exactly the closed bytes and refuses every change while sealing', async () => {
    await fc.assert(fc.asyncProperty(scenario, async ({ files, heldOpen, lateWrites }) => {
      const h = await startCore();
      try {
        await h.fs.mkdir('/ck', 0o755);
        const expected = new Map<string, Buffer>();
        const held: Array<{ fh: number; name: string }> = [];
        const heldNames = new Set(heldOpen.map((i) => files[i % files.length]!.name));
        for (const f of files) {
          const fh = await h.fs.create(`/ck/${f.name}`, 0o644, O_WRONLY);
          const data = Buffer.from(f.data);
          h.fs.write(fh, data, data.length, 0);
          expected.set(f.name, data);
          if (heldNames.has(f.name)) held.push({ fh, name: f.name });
          else await h.fs.release(fh);
        }
        const folder = (await h.cp.resolvePath(h.mountId, '/ck'))!;
        const commit = await h.cp.commit(h.mountId, folder.id, {});

        const anyFile = `/ck/${files[0]!.name}`;
        const refusal = held.length > 0 ? 'SEALED' : null;
        if (refusal) {
          expect(await codeOf(h.fs.create('/ck/late', 0o644, O_WRONLY))).toBe('SEALED');
          expect(await codeOf(h.fs.open(anyFile, O_WRONLY))).toBe('SEALED');
          expect(await codeOf(h.fs.truncate(anyFile, 0))).toBe('SEALED');
          expect(await codeOf(h.fs.unlink(anyFile))).toBe('SEALED');
          expect(await codeOf(h.fs.rename(anyFile, '/ck/renamed'))).toBe('SEALED');
          expect(await codeOf(h.fs.mkdir('/ck/sub', 0o755))).toBe('SEALED');
        }
        // Handles opened before the seal may still write, then close.
        for (const [i, extra] of lateWrites.entries()) {
          const target = held[i % Math.max(held.length, 1)];
          if (!target) break;
          const cur = expected.get(target.name)!;
          h.fs.write(target.fh, Buffer.from(extra), extra.length, cur.length);
          expected.set(target.name, Buffer.concat([cur, Buffer.from(extra)]));
        }
        for (const x of held) await h.fs.release(x.fh);

        const done = await waitSettled(h, commit.id);
        expect(done.phase).toBe('completed');
        const manifest = await h.cp.getManifest(h.mountId, commit.id);
        expect(manifest.files.map((f) => f.path)).toEqual([...expected.keys()].sort());
        for (const f of manifest.files) {
          expect(f.size).toBe(expected.get(f.path)!.length);
          expect(f.sha256).toBe(sha(expected.get(f.path)!));
        }
        expect(await codeOf(h.fs.create('/ck/after', 0o644, O_WRONLY))).toBe('COMMITTED');
        expect(await codeOf(h.fs.open(anyFile, O_WRONLY))).toBe('COMMITTED');
      } finally {
        await h.close();
      }
    }), { numRuns: 30 });
  });

  it('fails with OPEN_HANDLES when a writer never closes, and keeps the folder STAGING and intact', async () => {
    await fc.assert(fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 4000 }), fc.uint8Array({ minLength: 1, maxLength: 4000 }), async (a, b) => {
      const h = await startCore({ sealTimeoutMs: 50 });
      try {
        await h.fs.mkdir('/ck', 0o755);
        const closed = await h.fs.create('/ck/closed', 0o644, O_WRONLY);
        h.fs.write(closed, Buffer.from(a), a.length, 0);
        await h.fs.release(closed);
        const open = await h.fs.create('/ck/open', 0o644, O_WRONLY);
        h.fs.write(open, Buffer.from(b), b.length, 0);
        const folder = (await h.cp.resolvePath(h.mountId, '/ck'))!;
        const c = await waitSettled(h, (await h.cp.commit(h.mountId, folder.id, {})).id);
        expect(c.phase).toBe('failed');
        expect(c.error?.code).toBe('OPEN_HANDLES');
        expect((await h.cp.resolvePath(h.mountId, '/ck'))!.state).toBe('staging');
        await h.fs.release(open);
        const buf = Buffer.alloc(a.length);
        const fh = await h.fs.open('/ck/closed', fsSync.constants.O_RDONLY);
        expect(h.fs.read(fh, buf, buf.length, 0)).toBe(a.length);
        await h.fs.release(fh);
        expect(buf.equals(Buffer.from(a))).toBe(true);
        // The folder takes writes again.
        await h.fs.release(await h.fs.create('/ck/again', 0o644, O_WRONLY));
      } finally {
        await h.close();
      }
    }), { numRuns: 15 });
  });
});
