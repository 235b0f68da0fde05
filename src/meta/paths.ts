/**
 * Mount-relative path and name rules, shared by the API and the filesystem core.
 *
 * Invariant: a path that passes `normalizePath` is absolute, has no empty, "." or ".."
 * components, no NUL, and no component over 255 bytes; `/` is the root.
 */
import { ApiError } from '../errors/index.js';

export const MAX_NAME_BYTES = 255;
export const MAX_PATH_BYTES = 4096;

export function validateName(name: unknown): string {
  if (typeof name !== 'string' || name.length === 0) throw new ApiError('BAD_REQUEST', 'name must be a non-empty string');
  if (name.includes('\0')) throw new ApiError('INVALID_PATH', 'name contains a NUL byte');
  if (name.includes('/')) throw new ApiError('INVALID_PATH', 'name contains "/"');
  if (name === '.' || name === '..') throw new ApiError('INVALID_PATH', `name may not be ${JSON.stringify(name)}`);
  if (Buffer.byteLength(name) > MAX_NAME_BYTES) throw new ApiError('NAME_TOO_LONG', `name is longer than ${MAX_NAME_BYTES} bytes`);
  return name;
}

export function normalizePath(path: unknown): string {
  if (typeof path !== 'string') throw new ApiError('BAD_REQUEST', 'path must be a string');
  if (path.includes('\0')) throw new ApiError('INVALID_PATH', 'path contains a NUL byte');
  if (!path.startsWith('/')) throw new ApiError('INVALID_PATH', `path must be absolute: ${JSON.stringify(path)}`);
  if (Buffer.byteLength(path) > MAX_PATH_BYTES) throw new ApiError('NAME_TOO_LONG', `path is longer than ${MAX_PATH_BYTES} bytes`);
  const parts = path.split('/').filter((p) => p !== '');
  for (const p of parts) {
    if (p === '.' || p === '..') throw new ApiError('INVALID_PATH', `path may not contain "${p}": ${JSON.stringify(path)}`);
    if (Buffer.byteLength(p) > MAX_NAME_BYTES) throw new ApiError('NAME_TOO_LONG', `a path component is longer than ${MAX_NAME_BYTES} bytes`);
  }
  return `/${parts.join('/')}`;
}

export function parentOf(path: string): string {
  const i = path.lastIndexOf('/');
  return i <= 0 ? '/' : path.slice(0, i);
}

export function baseName(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

export function joinPath(parent: string, name: string): string {
  return parent === '/' ? `/${name}` : `${parent}/${name}`;
}

/** `/`, `/a`, `/a/b` for `/a/b/c`: every folder above `path`, root first. */
export function ancestorsOf(path: string): string[] {
  const out = ['/'];
  const parts = path.split('/').filter(Boolean);
  for (let i = 1; i < parts.length; i++) out.push(`/${parts.slice(0, i).join('/')}`);
  return path === '/' ? [] : out;
}

/** Whether `path` is `dir` or inside it. */
export function isWithin(path: string, dir: string): boolean {
  return dir === '/' || path === dir || path.startsWith(`${dir}/`);
}

/** `path` relative to `dir` (no leading slash); `path` must be inside `dir`. */
export function relativeTo(dir: string, path: string): string {
  return dir === '/' ? path.slice(1) : path.slice(dir.length + 1);
}
