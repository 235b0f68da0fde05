/**
 * What the filesystem core, the staging agent and the object cache share: one mount's
 * data-plane state on this node.
 */
import * as path from 'node:path';
import type { Logger } from 'pino';
import type { ControlApi } from '../control/service.js';
import type { ObjectStore } from '../store/types.js';
import type { HandleTable } from './handles.js';
import type { StagingIndex } from './staging-index.js';

export interface CoreContext {
  mountId: string;
  agentId: string;
  control: ControlApi;
  store: ObjectStore;
  index: StagingIndex;
  handles: HandleTable;
  cacheDir: string;
  readOnly: boolean;
  /** Bytes of committed objects the read cache may keep (`--cache-size`); 0 or absent: no limit. */
  cacheMaxBytes?: number;
  /** Ranged-GET shape of downloads into the read cache, and the budget of blocks they share; defaults suit most stores. */
  readCache?: { chunkBytes?: number; concurrency?: number; totalBlocks?: number };
  /**
   * A cold read of a committed file prefetches the other committed files of its folder
   * into the read cache (`sibling-prefetch.ts`); absent or false: it does not.
   */
  prefetchSiblings?: boolean;
  /**
   * A large file written in order by one writer uploads while it is written
   * (`early-upload.ts`); absent or false: at its close.
   */
  uploadWhileWriting?: boolean;
  log: Logger;
  /**
   * Set by a FUSE binding whose kernel cache may hold written but unsent pages (the
   * native binding's writeback cache): writes them back for these nodes. The seal
   * calls it right before its snapshot.
   */
  flushKernelCache?: (nodeIds: string[]) => Promise<void>;
  /**
   * The nodes whose kernel cache a seal is flushing right now: the SETATTRs that write
   * back their times then are the seal's own doing (see RosetFilesystem.setattr).
   */
  flushing?: Set<string>;
  /**
   * Called, without waiting, when a file becomes complete in the namespace: its last
   * writer closed it, or a rename put it in place. Set by auto-commit (its rules name
   * the marker files a framework writes last); absent, nothing is called.
   */
  onFileReady?: (nodeId: string) => void;
}

export const stagingPath = (ctx: CoreContext, nodeId: string): string => path.join(ctx.cacheDir, 'staging', nodeId);
export const objectCachePath = (ctx: CoreContext, sha256: string): string => path.join(ctx.cacheDir, 'objects', sha256);
export const cacheTmpDir = (ctx: CoreContext): string => path.join(ctx.cacheDir, 'tmp');
