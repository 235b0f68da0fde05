/**
 * The native addon's interface (src/fuse/native-binding.ts) on a real FUSE mount, with
 * a scripted dispatcher instead of the filesystem core: attribute times reach stat(2)
 * exact to the nanosecond, a utimensat's nanoseconds reach JavaScript exactly, the
 * mount has default_permissions, malformed attributes are refused without answering
 * the request, a WRITE through a handle without H_WRITE is EBADF from C, and a READ
 * through a handle with H_GATED comes to JavaScript, is served by replyRead, and stays
 * in C once a reply cleared the flag.
 *
 * The kernel's requests are answered on this thread, so every file operation here is
 * asynchronous (libuv's pool), never a *Sync call that would block the answers.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import { constants, tmpdir } from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  H_GATED, H_WRITE, loadNativeBinding, Op, SetAttr, type AttrArray, type Dispatch, type Session, type SetAttrArray,
} from '../../src/fuse/native-binding.js';
import { fuseMountpoints } from '../../src/util/mounts.js';

const E = constants.errno as Record<string, number>;
const FILE_INO = 2;

describe('native binding on a real mount', () => {
  const native = loadNativeBinding();
  let root: string;
  let mnt: string;
  let backing: fs.promises.FileHandle;
  let session: Session | undefined;
  const setattrs: Array<{ toSet: number; attr: SetAttrArray }> = [];
  const badAttrErrors: string[] = [];
  // atime, mtime, ctime as [sec, nsec]; the ctime is before 1970.
  let times: Array<[number, number]> = [[1_700_000_000, 123_456_789], [1_234_567_890, 987_654_321], [-2, 500_000_000]];
  let fileFlags = 0;
  let fileSize = 0;
  /** Op.READ requests seen: [offset, size]; `ungate` is what the next replies pass. */
  const gatedReads: Array<[number, number]> = [];
  let ungate = 0;

  const fileAttr = (): AttrArray => [FILE_INO, 0o100644, 1, 0, 0, fileSize, 0, 4096, ...times[0]!, ...times[1]!, ...times[2]!];
  const rootAttr: AttrArray = [1, 0o040755, 2, 0, 0, 4096, 8, 4096, 0, 0, 0, 0, 0, 0];

  const dispatch: Dispatch = (op, id, ino, _fh, a, _b, _c, name, _name2, attr) => {
    switch (op) {
      case Op.INIT: case Op.FORGET: case Op.IOERROR: case Op.ENDED: return;
      case Op.LOOKUP:
        if (ino === 1 && name === 'f') native.replyEntry(id, fileAttr(), 0, 0);
        else native.replyErr(id, E.ENOENT!);
        return;
      case Op.GETATTR:
        if (ino === FILE_INO) {
          // Fractional nanoseconds, then too many: refused, the request stays open.
          for (const bad of [[...fileAttr().slice(0, 9), 0.5, ...fileAttr().slice(10)], [...fileAttr().slice(0, 11), 1e9, ...fileAttr().slice(12)]]) {
            try {
              native.replyAttr(id, bad as AttrArray, 0);
            } catch (err) {
              badAttrErrors.push((err as Error).message);
            }
          }
        }
        native.replyAttr(id, ino === FILE_INO ? fileAttr() : rootAttr, 0);
        return;
      case Op.SETATTR:
        setattrs.push({ toSet: a, attr: attr! });
        if (a & SetAttr.ATIME) times[0] = [attr![4], attr![5]];
        if (a & SetAttr.MTIME) times[1] = [attr![6], attr![7]];
        native.replyAttr(id, fileAttr(), 0);
        return;
      case Op.OPEN:
        native.replyOpen(id, 7, backing.fd, fileFlags, false);
        return;
      case Op.READ:
        gatedReads.push([a, _b]);
        native.replyRead(id, ino, _c, a, _b, ungate);
        return;
      case Op.OPENDIR:
        native.replyOpendir(id, 1);
        return;
      case Op.READDIR:
        native.replyDirents(id, a, 0, [], [], []);
        return;
      default:
        native.replyErr(id, op === Op.STATFS ? E.ENOSYS! : 0);
    }
  };

  beforeAll(async () => {
    root = await fsp.mkdtemp(path.join(tmpdir(), 'roset-native-'));
    mnt = path.join(root, 'mnt');
    await fsp.mkdir(mnt);
    backing = await fsp.open(path.join(root, 'backing'), 'w+');
    // Without the writeback cache every write(2) is a WRITE the test can see refused.
    session = native.mount(mnt, { writebackCache: false, maxThreads: 2 }, dispatch);
  });

  afterAll(async () => {
    if (session) expect(await native.unmount(session)).toBe(0);
    await backing?.close();
    await fsp.rm(root, { recursive: true, force: true });
  });

  it('mounts with default_permissions', async () => {
    await fsp.stat(mnt);
    expect(fuseMountpoints()).toContain(mnt);
    const line = fs.readFileSync('/proc/mounts', 'utf8').split('\n').map((l) => l.split(' ')).find((f) => f[1] === mnt);
    expect(line?.[3]?.split(',')).toContain('default_permissions');
  });

  it('gives stat(2) the attribute times exact to the nanosecond, and refuses malformed ones', async () => {
    const st = await fsp.stat(path.join(mnt, 'f'), { bigint: true });
    expect(st.atimeNs).toBe(1_700_000_000_123_456_789n);
    expect(st.mtimeNs).toBe(1_234_567_890_987_654_321n);
    expect(st.ctimeNs).toBe(-1_500_000_000n);
    expect(badAttrErrors.length).toBeGreaterThanOrEqual(2);
    for (const m of badAttrErrors) expect(m).toMatch(/bad attr/);
  });

  it('passes a utimensat to SETATTR as whole seconds and nanoseconds', async () => {
    await promisify(execFile)('touch', ['-c', '-d', '@1999999999.000000007', path.join(mnt, 'f')]);
    const s = setattrs.at(-1)!;
    expect(s.toSet & (SetAttr.ATIME | SetAttr.MTIME)).toBe(SetAttr.ATIME | SetAttr.MTIME);
    expect(s.attr.slice(4)).toEqual([1_999_999_999, 7, 1_999_999_999, 7]);
    const st = await fsp.stat(path.join(mnt, 'f'), { bigint: true });
    expect(st.mtimeNs).toBe(1_999_999_999_000_000_007n);
  });

  it('refuses a WRITE through a handle without H_WRITE with EBADF, in C', async () => {
    fileFlags = 0;
    const before = native.stats(session!).writesRefused;
    const fh = await fsp.open(path.join(mnt, 'f'), 'r+');
    try {
      await expect(fh.write(Buffer.from('x'), 0, 1, 0)).rejects.toMatchObject({ code: 'EBADF' });
    } finally {
      await fh.close();
    }
    expect(native.stats(session!).writesRefused).toBe(before + 1);
    // With H_WRITE the same WRITE lands in the backing file.
    fileFlags = H_WRITE;
    const fh2 = await fsp.open(path.join(mnt, 'f'), 'r+');
    try {
      expect((await fh2.write(Buffer.from('y'), 0, 1, 0)).bytesWritten).toBe(1);
    } finally {
      await fh2.close();
    }
    expect(await fsp.readFile(path.join(root, 'backing'), 'utf8')).toBe('y');
  });

  it('sends a READ through a handle with H_GATED to JavaScript, and keeps it in C once a reply ungates it', async () => {
    const bytes = Buffer.alloc(4 << 20);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7 + 3) & 0xff;
    await backing.truncate(0);
    await backing.write(bytes, 0, bytes.length, 0);
    fileSize = bytes.length;
    fileFlags = H_GATED;
    ungate = 0;
    const fh = await fsp.open(path.join(mnt, 'f'), 'r');
    try {
      const buf = Buffer.alloc(4096);
      await fh.read(buf, 0, 4096, 0);
      expect(buf.equals(bytes.subarray(0, 4096))).toBe(true);
      expect(gatedReads.length).toBeGreaterThan(0);
      // Answered with the flag cleared: later READs of this handle never come here.
      const seen = gatedReads.length;
      ungate = 7;
      await fh.read(buf, 0, 4096, 1 << 20);
      expect(buf.equals(bytes.subarray(1 << 20, (1 << 20) + 4096))).toBe(true);
      expect(gatedReads.length).toBeGreaterThan(seen);
      const afterUngate = gatedReads.length;
      const readsBefore = native.stats(session!).reads;
      await fh.read(buf, 0, 4096, 3 << 20);
      expect(buf.equals(bytes.subarray(3 << 20, (3 << 20) + 4096))).toBe(true);
      expect(gatedReads.length).toBe(afterUngate);
      expect(native.stats(session!).reads).toBeGreaterThan(readsBefore);
    } finally {
      await fh.close();
      fileFlags = 0;
    }
  });
});

