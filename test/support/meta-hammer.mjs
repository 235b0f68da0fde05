// One process of the metadata stress test (test/meta/stress.test.ts): opens the
// database it is given with the built store (dist/meta/index.js: `npm run build`
// first), prints `ready`, waits for a line on stdin (so that every process starts at
// once), then runs a bounded number of random operations on one small tree and prints
// one JSON line: what succeeded, what was refused (by code), the ref compare-and-swaps
// it won, and anything unexpected.
//
// Usage: node meta-hammer.mjs '{"module": ".../dist/meta/index.js", "database": "...",
//   "stateDir": "...", "mountId": "mnt_1", "worker": 0, "ops": 300, "seed": 1}'
//
// Operations, on paths of up to three names from a, b, c (so that processes collide):
// create, remove, move (between folders too, sometimes RENAME_NOREPLACE), soft delete,
// setattr (guarded as writable or not-committed), beginCommit (alone or two folders in
// a group), and for the commits it began: markManifested + completeCommits, or
// failCommits; failing another process's pending commit (as recovery would); and ref
// compare-and-swap moves and deletes.
import { createInterface } from 'node:readline';

const cfg = JSON.parse(process.argv[2]);
const { openMetadata } = await import(cfg.module);
const meta = await openMetadata(cfg.database, cfg.stateDir);
const mountId = cfg.mountId;

let s = (cfg.seed * 2654435761) >>> 0 || 1;
/** mulberry32: a seeded generator, so a failing run can be replayed with its seed. */
function rand() {
  s = (s + 0x6d2b79f5) >>> 0;
  let t = s;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = (arr) => arr[Math.floor(rand() * arr.length)];
const NAMES = ['a', 'b', 'c'];
const REFS = ['r0', 'r1'];
const randomPath = (min, max) => {
  const depth = min + Math.floor(rand() * (max - min + 1));
  return `/${Array.from({ length: depth }, () => pick(NAMES)).join('/')}`;
};
const now = () => new Date().toISOString();
const ZERO = { files: 0, bytes: 0, uploadedBytes: 0, dedupedBytes: 0 };

/** Refusals the interface documents for these operations on a tree others change. */
const EXPECTED = new Set([
  'NODE_NOT_FOUND', 'NODE_EXISTS', 'CONFLICT', 'NOT_A_FOLDER', 'IS_A_FOLDER', 'FOLDER_NOT_EMPTY', 'INVALID_MOVE', 'CONTAINS_COMMITS',
  'SEALED', 'COMMITTED', 'COMMIT_IN_PROGRESS', 'NOT_MANIFESTED', 'REFERENCED_BY_REF', 'COMMIT_FOLDER_DELETED',
]);

const report = { worker: cfg.worker, ok: {}, refused: {}, unexpected: [], refWins: {}, refDeletes: {} };
const bump = (o, k) => { o[k] = (o[k] ?? 0) + 1; };

async function attempt(kind, fn) {
  try {
    const r = await fn();
    if (r !== 'skip') bump(report.ok, kind);
  } catch (err) {
    const code = err?.rosetCode ?? (/is not manifested/.test(String(err?.message)) ? 'NOT_MANIFESTED' : null);
    if (code && EXPECTED.has(code)) bump(report.refused, `${kind}:${code}`);
    else report.unexpected.push(`${kind}: ${err?.stack ?? err}`);
  }
}

/** Commits this process began and has not ended: { ids, group }. */
const pending = [];
let made = 0;
const commit = (nodeId, path, groupId) => ({
  id: `cmt_w${cfg.worker}_${++made}`, mountId, nodeId, path, message: '', groupId, parentCommitId: null, phase: 'sealing', error: null,
  stats: ZERO, createdAt: now(), completedAt: null,
});

async function folderAt(min, max) {
  const path = randomPath(min, max);
  const n = await meta.resolvePath(mountId, path);
  return n && n.type === 'folder' ? n : null;
}

const ops = [
  [30, 'create', async () => {
    const parent = await meta.resolvePath(mountId, randomPath(0, 2));
    if (!parent) return 'skip';
    const folder = rand() < 0.6;
    await meta.createNode({
      mountId, parentId: parent.id, name: pick(NAMES), type: folder ? 'folder' : 'file', mode: folder ? 0o40755 : 0o100644, uid: 0, gid: 0,
      ownerAgent: folder ? null : `agt_${cfg.worker % 2}`,
    });
  }],
  [8, 'remove', async () => {
    const n = await meta.resolvePath(mountId, randomPath(1, 3));
    if (!n) return 'skip';
    await meta.removeNode(mountId, n.parentId, n.name, n.type);
  }],
  [15, 'move', async () => {
    const src = await meta.resolvePath(mountId, randomPath(1, 3));
    const dst = await meta.resolvePath(mountId, randomPath(0, 2));
    if (!src || !dst) return 'skip';
    await meta.moveNode({ mountId, srcParentId: src.parentId, srcName: src.name, dstParentId: dst.id, dstName: pick(NAMES), noReplace: rand() < 0.3 });
  }],
  [5, 'softDelete', async () => {
    const n = await meta.resolvePath(mountId, randomPath(1, 2));
    if (!n) return 'skip';
    await meta.softDeleteNode(n.id, now());
  }],
  [5, 'setAttrs', async () => {
    const n = await meta.resolvePath(mountId, randomPath(1, 3));
    if (!n) return 'skip';
    if (rand() < 0.5) await meta.setAttrs(mountId, n.id, { mode: rand() < 0.5 ? 0o700 : 0o755 }, 'writable');
    else await meta.setAttrs(mountId, n.id, { size: Math.floor(rand() * 1000) }, 'not-committed');
  }],
  [12, 'begin', async () => {
    if (pending.length >= 2) return 'skip';
    const f = await folderAt(1, 2);
    if (!f) return 'skip';
    if (rand() < 0.25) {
      // Two folders committed as a group: both begin, or the first is failed with the group.
      const g = await folderAt(1, 2);
      if (!g || g.id === f.id) return 'skip';
      const groupId = `grp_w${cfg.worker}_${made}`;
      await meta.createGroup({ id: groupId, mountId, message: '', status: 'pending', createdAt: now(), sealedAt: null, committedAt: null });
      const c1 = await meta.beginCommit(commit(f.id, f.path, groupId));
      try {
        const c2 = await meta.beginCommit(commit(g.id, g.path, groupId));
        pending.push({ ids: [c1.id, c2.id], group: groupId });
      } catch (err) {
        await meta.failCommits([c1.id], { code: 'GROUP_FAILED', message: 'stress' }, { id: groupId });
        throw err;
      }
      return undefined;
    }
    const c = await meta.beginCommit(commit(f.id, f.path, null));
    pending.push({ ids: [c.id], group: null });
    return undefined;
  }],
  [14, 'end', async () => {
    const p = pending.shift();
    if (!p) return 'skip';
    const group = p.group ? { id: p.group } : undefined;
    if (rand() < 0.6) {
      for (const id of p.ids) await meta.markManifested(id, ZERO, []);
      await meta.completeCommits(p.ids, now(), group);
    } else {
      await meta.failCommits(p.ids, { code: 'INTERRUPTED', message: 'stress' }, group);
    }
    return undefined;
  }],
  [6, 'failOther', async () => {
    const live = await meta.listCommitsInPhases(['sealing', 'uploading', 'manifested']);
    const c = live.length ? pick(live) : null;
    if (!c) return 'skip';
    const ids = c.groupId ? (await meta.listGroupCommits(c.groupId)).map((x) => x.id) : [c.id];
    await meta.failCommits(ids, { code: 'INTERRUPTED', message: 'taken over' }, c.groupId ? { id: c.groupId } : undefined);
    return undefined;
  }],
  [10, 'ref', async () => {
    const name = pick(REFS);
    if (rand() < 0.1) {
      if (await meta.deleteRef(mountId, name, `w${cfg.worker}`, now())) bump(report.refDeletes, name);
      return undefined;
    }
    const done = await meta.listCommits(mountId, { phases: ['completed'] }, { limit: 10 });
    if (!done.length) return 'skip';
    const cur = await meta.getRef(mountId, name);
    const moved = await meta.setRef({ mountId, name, commitId: pick(done).id, updatedAt: now(), updatedBy: `w${cfg.worker}` }, cur ? cur.commitId : null);
    if (moved) bump(report.refWins, name);
    else bump(report.refused, 'ref:REF_CONFLICT');
    return undefined;
  }],
];
const total = ops.reduce((n, [w]) => n + w, 0);

process.stdout.write('ready\n');
await new Promise((resolve) => { createInterface({ input: process.stdin }).once('line', resolve); });

for (let i = 0; i < cfg.ops; i++) {
  let r = rand() * total;
  const op = ops.find(([w]) => (r -= w) < 0) ?? ops[ops.length - 1];
  await attempt(op[1], op[2]);
}
// Leave no commit of this process pending.
for (const p of pending.splice(0)) {
  await attempt('end', () => meta.failCommits(p.ids, { code: 'INTERRUPTED', message: 'stress over' }, p.group ? { id: p.group } : undefined));
}
await meta.close();
process.stdout.write(`${JSON.stringify(report)}\n`);
process.exit(0);
