/**
 * The files a Roset process keeps in its state directory, shared by `roset-mount` and
 * `roset serve`: the API key (0600), ids made once and kept across restarts, and the
 * atomic write they all use.
 *
 * Invariants: a file is replaced whole (write, then rename), never seen half-written;
 * an id, once made, is never silently replaced: staged files, upload tags and commit
 * leases are held under it.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { Logger } from 'pino';
import { hashToken, type ControlPlane } from '../control/service.js';
import type { MetadataStore } from '../meta/types.js';
import { STATE_FILES } from '../util/state-dir.js';

export async function writeFileAtomic(file: string, text: string, mode: number): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  await fs.writeFile(tmp, text, { mode });
  await fs.chmod(tmp, mode);
  await fs.rename(tmp, file);
}

/** The id in `file`, made (`<prefix>_<random>`) at the first start and the same at every later one. */
export async function stableId(file: string, prefix: string): Promise<string> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    const id = `${prefix}_${randomBytes(8).toString('hex')}`;
    await writeFileAtomic(file, `${id}\n`, 0o644);
    return id;
  }
  const id = text.trim();
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(id)) throw new Error(`${file} does not hold an id (1-128 characters of [A-Za-z0-9._-]): fix or remove it`);
  return id;
}

/**
 * The API key in `<stateDir>/api-key`, made at first start. A key file that outlived its
 * metadata (rebuilt or recovered) is registered again, so it stays valid; a key that was
 * revoked is replaced by a new one (it is never brought back).
 */
export async function ensureApiKey(cp: ControlPlane, meta: MetadataStore, stateDir: string, log: Logger): Promise<void> {
  const file = path.join(stateDir, STATE_FILES.apiKey);
  let token: string | null = null;
  try {
    token = (await fs.readFile(file, 'utf8')).trim() || null;
  } catch {
    // First start: no key yet.
  }
  if (token) {
    const known = await cp.lookupApiKey(token);
    if (!known) {
      await meta.insertApiKey({ id: `key_${randomBytes(8).toString('hex')}`, name: 'default', hash: hashToken(token), createdAt: new Date().toISOString(), revokedAt: null });
    }
    if (!known?.revokedAt) {
      await fs.chmod(file, 0o600);
      return;
    }
    // A revoked key stays revoked: this process gets a new one.
    log.warn({ file, keyId: known.id }, 'the API key in the state dir was revoked: making a new one');
  }
  const created = await cp.createApiKey('default');
  await writeFileAtomic(file, `${created.token}\n`, 0o600);
  log.info({ file }, 'created the API key');
}
