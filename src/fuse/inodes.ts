/**
 * The inode table of the native binding: which node each inode number the kernel holds
 * stands for, and how many lookups the kernel owes us a FORGET for.
 *
 * The kernel speaks inode numbers; the core speaks paths. Numbers come from the staging
 * index (`StagingIndex.ino(nodeId)`: stable, never reused), except the root, which FUSE
 * fixes at 1. The table maps a number to a node id, never to a path: the path is read
 * from the node when a request arrives, so renames (here or through the API) are
 * always respected.
 *
 * Invariants:
 * - An entry exists while the kernel holds the inode: added on every successful entry
 *   reply (LOOKUP, MKDIR, CREATE), dropped when FORGET brings its count to zero.
 * - The root is pinned and never forgotten.
 * - Only the JavaScript thread touches the table (FORGET arrives as a queued call), so
 *   a reply and the count it adds cannot race a FORGET.
 */
export const ROOT_INO = 1;

interface Entry {
  nodeId: string;
  lookups: number;
}

export class InodeTable {
  private readonly byIno = new Map<number, Entry>();
  private readonly byNode = new Map<string, number>();

  constructor(rootNodeId: string) {
    this.byIno.set(ROOT_INO, { nodeId: rootNodeId, lookups: 1 });
    this.byNode.set(rootNodeId, ROOT_INO);
  }

  nodeId(ino: number): string | undefined {
    return this.byIno.get(ino)?.nodeId;
  }

  ino(nodeId: string): number | undefined {
    return this.byNode.get(nodeId);
  }

  /** The kernel now holds one more reference to `ino` (an entry reply reached it). */
  remember(ino: number, nodeId: string): void {
    const e = this.byIno.get(ino);
    if (e) {
      e.lookups++;
      return;
    }
    this.byIno.set(ino, { nodeId, lookups: 1 });
    this.byNode.set(nodeId, ino);
  }

  /** FORGET: the kernel dropped `n` references. */
  forget(ino: number, n: number): void {
    if (ino === ROOT_INO) return;
    const e = this.byIno.get(ino);
    if (!e) return;
    e.lookups -= n;
    if (e.lookups <= 0) {
      this.byIno.delete(ino);
      if (this.byNode.get(e.nodeId) === ino) this.byNode.delete(e.nodeId);
    }
  }

  /** Inodes the kernel holds, the root included. */
  get size(): number {
    return this.byIno.size;
  }
}
