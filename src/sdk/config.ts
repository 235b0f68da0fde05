/**
 * Where the CLI and the TypeScript SDK find the API (design §5).
 *
 * Owns: the resolution order of the API URL, key and mount id. The state-directory
 * default is the daemon's own (src/util/state-dir.ts), re-exported here, so the files
 * it writes are the ones clients read.
 *
 * Order, per setting: explicit option → `ROSET_API_URL` / `ROSET_API_KEY` /
 * `ROSET_MOUNT_ID` → the state directory's `endpoint` / `api-key` files →
 * `http://127.0.0.1:7070` (no key, no mount id: the server's default mount).
 * State directory: explicit option → `ROSET_STATE_DIR` → `/var/lib/roset` for root →
 * `~/.local/state/roset`.
 * CA file (the PEM CA an https:// API's certificate is checked against, instead of the
 * system's): explicit option → `ROSET_CA_FILE` → none (the system's CAs).
 *
 * Invariant: an empty string counts as unset everywhere, so `ROSET_API_KEY=` in an
 * environment file does not hide the key file. Nothing here logs or returns the key
 * except in `apiKey` itself.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { STATE_FILES, defaultStateDir } from '../util/state-dir.js';

export { defaultStateDir };

export const DEFAULT_API_URL = 'http://127.0.0.1:7070';
export const ENDPOINT_FILE = STATE_FILES.endpoint;
export const API_KEY_FILE = STATE_FILES.apiKey;

export type ConfigSource = 'option' | 'env' | 'state-dir' | 'default';

export interface ConfigOptions {
  apiUrl?: string;
  apiKey?: string;
  mountId?: string;
  stateDir?: string;
  /** PEM file of the CA that signed the API's certificate (private deployments). */
  caFile?: string;
  /** Defaults to `process.env`; tests pass their own. */
  env?: NodeJS.ProcessEnv;
}

export interface ResolvedConfig {
  apiUrl: string;
  apiKey: string | undefined;
  mountId: string | undefined;
  stateDir: string;
  caFile: string | undefined;
  sources: { apiUrl: ConfigSource; apiKey: ConfigSource | undefined; mountId: ConfigSource | undefined; stateDir: ConfigSource; caFile: ConfigSource | undefined };
  /** State files that exist but could not be read (e.g. EACCES); the CLI shows them. */
  warnings: string[];
}

function nonEmpty(v: string | undefined): string | undefined {
  return v === undefined || v.trim() === '' ? undefined : v.trim();
}

function readStateFile(path: string, warnings: string[]): string | undefined {
  try {
    return nonEmpty(readFileSync(path, 'utf8'));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ENOTDIR') warnings.push(`cannot read ${path}: ${code ?? String(err)}`);
    return undefined;
  }
}

/** The daemon writes a URL, but a bare `host:port` is accepted since people edit these files. */
export function normalizeApiUrl(url: string): string {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(url) ? url : `http://${url}`;
  return withScheme.replace(/\/+$/, '');
}

export function resolveConfig(options: ConfigOptions = {}): ResolvedConfig {
  const env = options.env ?? process.env;
  const warnings: string[] = [];

  const explicitStateDir = nonEmpty(options.stateDir);
  const stateDir = explicitStateDir ?? defaultStateDir(env);
  const stateDirSource: ConfigSource = explicitStateDir ? 'option' : env.ROSET_STATE_DIR ? 'env' : 'default';

  let apiUrl: string;
  let apiUrlSource: ConfigSource;
  const optUrl = nonEmpty(options.apiUrl);
  const envUrl = nonEmpty(env.ROSET_API_URL);
  if (optUrl) [apiUrl, apiUrlSource] = [optUrl, 'option'];
  else if (envUrl) [apiUrl, apiUrlSource] = [envUrl, 'env'];
  else {
    const fileUrl = readStateFile(join(stateDir, ENDPOINT_FILE), warnings);
    if (fileUrl) [apiUrl, apiUrlSource] = [fileUrl, 'state-dir'];
    else [apiUrl, apiUrlSource] = [DEFAULT_API_URL, 'default'];
  }

  let apiKey: string | undefined;
  let apiKeySource: ConfigSource | undefined;
  const optKey = nonEmpty(options.apiKey);
  const envKey = nonEmpty(env.ROSET_API_KEY);
  if (optKey) [apiKey, apiKeySource] = [optKey, 'option'];
  else if (envKey) [apiKey, apiKeySource] = [envKey, 'env'];
  else {
    apiKey = readStateFile(join(stateDir, API_KEY_FILE), warnings);
    apiKeySource = apiKey ? 'state-dir' : undefined;
  }

  const optMount = nonEmpty(options.mountId);
  const envMount = nonEmpty(env.ROSET_MOUNT_ID);
  const mountId = optMount ?? envMount;
  const mountIdSource: ConfigSource | undefined = optMount ? 'option' : envMount ? 'env' : undefined;

  const optCa = nonEmpty(options.caFile);
  const envCa = nonEmpty(env.ROSET_CA_FILE);
  const caFile = optCa ?? envCa;
  const caFileSource: ConfigSource | undefined = optCa ? 'option' : envCa ? 'env' : undefined;

  return {
    apiUrl: normalizeApiUrl(apiUrl),
    apiKey,
    mountId,
    stateDir,
    caFile,
    sources: { apiUrl: apiUrlSource, apiKey: apiKeySource, mountId: mountIdSource, stateDir: stateDirSource, caFile: caFileSource },
    warnings,
  };
}
