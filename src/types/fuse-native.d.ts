// Minimal typings for fuse-native 2.x (it ships none): only what the adapter uses.
declare module 'fuse-native' {
  type Cb = (...args: unknown[]) => void;
  interface FuseOptions {
    force?: boolean;
    mkdir?: boolean;
    timeout?: number | false;
    allowOther?: boolean;
    defaultPermissions?: boolean;
    maxRead?: number;
    fsname?: string;
    attrTimeout?: number;
    entryTimeout?: number;
    debug?: boolean;
  }
  class Fuse {
    constructor(mnt: string, ops: Record<string, Cb>, opts?: FuseOptions);
    mount(cb: (err: Error | null) => void): void;
    unmount(cb: (err: Error | null) => void): void;
    static unmount(mnt: string, cb: (err: Error | null) => void): void;
  }
  export default Fuse;
}
