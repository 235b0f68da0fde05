/**
 * Maps a PATH argument to (mount, mount-relative path).
 *
 * A PATH under a mountpoint that the API reports (`Mount.mountpoints`) belongs to that
 * mount, and its mount-relative path is the rest: `/mnt/roset/ckpt/step-1` →
 * `/ckpt/step-1`. Paths are compared as realpaths, so symlinks and `..` into or out of
 * a mountpoint map correctly; the deepest mountpoint wins when mounts nest. A PATH that
 * is under no mountpoint and starts with `/` is already mount-relative.
 *
 * Invariant: a PATH that does not exist locally is still mapped by its absolute form,
 * so a typo under a mountpoint reports NODE_NOT_FOUND for the right mount rather than
 * being taken for a mount-relative path.
 */
import { realpath } from 'node:fs/promises';
import { relative, resolve, sep } from 'node:path';
import { RosetError } from '../errors/index.js';
import { fuseMountpoints } from '../util/mounts.js';
import type { Mount, Node, RosetClient } from '../sdk/index.js';

export interface Target {
  /** The mount whose mountpoint holds PATH; undefined for a mount-relative PATH. */
  mount: Mount | undefined;
  /** Client addressing the right mount (X-Roset-Mount-Id). */
  client: RosetClient;
  /** Mount-relative absolute path. */
  path: string;
  /** The local path, when PATH was under a mountpoint. */
  local: string | undefined;
}

async function realOrResolved(p: string): Promise<string> {
  try {
    return await realpath(p);
  } catch {
    // A missing path, or a dead FUSE mount (ENOTCONN): compare its absolute form.
    return resolve(p);
  }
}

function isUnder(child: string, dir: string): boolean {
  return child === dir || child.startsWith(dir.endsWith(sep) ? dir : dir + sep);
}

export async function mapPath(client: RosetClient, input: string): Promise<Target> {
  if (input === '') throw new RosetError('INVALID_PATH', 'PATH is empty');
  const mounts = await client.listAll((o) => client.listMounts(o));
  const local = await realOrResolved(input);

  // With several nodes the API reports every node's mountpoint, paths on other
  // machines: one mounted on this machine is the one PATH is under, even when another
  // node's mountpoint looks like a folder inside it.
  const candidates: Array<{ mount: Mount; mountpoint: string }> = [];
  for (const mount of mounts) {
    for (const mp of mount.mountpoints) {
      const real = await realOrResolved(mp);
      if (isUnder(local, real)) candidates.push({ mount, mountpoint: real });
    }
  }
  const here = new Set(fuseMountpoints());
  const mountedHere = candidates.filter((c) => here.has(c.mountpoint));
  let best: { mount: Mount; mountpoint: string } | undefined;
  for (const c of mountedHere.length > 0 ? mountedHere : candidates) {
    if (!best || c.mountpoint.length > best.mountpoint.length) best = c;
  }

  if (best) {
    const explicit = client.config.sources.mountId === 'option' ? client.config.mountId : undefined;
    if (explicit !== undefined && explicit !== best.mount.id) {
      throw new RosetError('BAD_REQUEST', `${input} is under the mountpoint of mount ${best.mount.id} (${best.mountpoint}), not of --mount-id ${explicit}`);
    }
    const rel = relative(best.mountpoint, local);
    return {
      mount: best.mount,
      client: client.withMountId(best.mount.id),
      path: rel === '' ? '/' : `/${rel.split(sep).join('/')}`,
      local,
    };
  }
  if (input.startsWith('/')) return { mount: undefined, client, path: input, local: undefined };
  const where = mounts.flatMap((m) => m.mountpoints);
  throw new RosetError(
    'INVALID_PATH',
    `${input} is not under a Roset mountpoint (${where.length ? where.join(', ') : 'none is mounted'}) and is not a mount-relative path like /checkpoints/step-1`,
  );
}

/** Maps PATH and looks up its node; NODE_NOT_FOUND names both forms of the path. */
export async function resolveTarget(client: RosetClient, input: string): Promise<Target & { node: Node }> {
  const target = await mapPath(client, input);
  const node = await target.client.resolvePath(target.path);
  if (!node) {
    const how = target.local ? `${target.path} in mount ${target.mount?.id} (from ${input})` : `${target.path} (taken as a mount-relative path: it is under no mountpoint)`;
    throw new RosetError('NODE_NOT_FOUND', `No such file or folder: ${how}`);
  }
  return { ...target, node };
}
