/**
 * Binding selection: mounts a RosetFilesystem with the named FUSE binding. Each binding
 * is imported only when chosen, so a machine that lacks one (the native addon not built,
 * or libfuse 2 missing) can still run the other.
 */
import type { RosetFilesystem } from '../core/filesystem.js';
import type { FuseBinding, FuseMount, FuseMountOptions } from './types.js';

export { DEFAULT_FUSE_BINDING, FUSE_BINDINGS, type FuseBinding, type FuseMount } from './types.js';

export async function mountFuseBinding(binding: FuseBinding, fs: RosetFilesystem, mountpoint: string, opts: FuseMountOptions): Promise<FuseMount> {
  switch (binding) {
    case 'native':
      return (await import('./native.js')).mountNative(fs, mountpoint, opts);
    case 'fuse-native':
      return (await import('./adapter.js')).mountFuse(fs.byPath(), mountpoint, opts);
    default: {
      const never: never = binding;
      throw new Error(`Unknown FUSE binding ${String(never)}`);
    }
  }
}
