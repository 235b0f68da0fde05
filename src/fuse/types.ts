/**
 * What the daemon sees of a FUSE binding, whichever it is. Both bindings translate
 * requests into the same RosetFilesystem calls; they differ only in how (docs/SEMANTICS.md,
 * "FUSE bindings").
 */
import type { Logger } from 'pino';

export const FUSE_BINDINGS = ['native', 'fuse-native'] as const;
export type FuseBinding = (typeof FUSE_BINDINGS)[number];
export const DEFAULT_FUSE_BINDING: FuseBinding = 'native';

export interface FuseMountOptions {
  allowOther: boolean;
  log: Logger;
  /** Called when the mount went away without `unmount()` (a `umount` from outside); the native binding only. */
  onUnmountedOutside?: () => void;
}

export interface FuseMount {
  readonly binding: FuseBinding;
  /** Unmounts; rejects (and stays mounted) when the kernel refuses, e.g. files are open. */
  unmount(): Promise<void>;
  /**
   * Writes back whatever the kernel still holds dirty for these nodes and drops its
   * cached pages. Only bindings whose kernel cache can hold unwritten data have it.
   */
  flushKernelCache?(nodeIds: string[]): Promise<void>;
}
