/**
 * The listener flags shared by `roset-mount` and `roset serve`: one parser for
 * `--listen HOST:PORT`, and `--tls-cert`/`--tls-key`, which go together and must be
 * readable before anything starts.
 */
import { accessSync, constants } from 'node:fs';
import * as path from 'node:path';
import { InvalidArgumentError } from 'commander';
import type { TlsFiles } from '../api/listen-policy.js';

export function listen(v: string): { host: string; port: number } {
  const m = /^(.*):(\d{1,5})$/.exec(v);
  if (!m || Number(m[2]) > 65535) throw new InvalidArgumentError('expected HOST:PORT, e.g. 127.0.0.1:7070');
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]) };
}

/** `--tls-cert` and `--tls-key` (or their variables) go together; null for plain HTTP. */
export function tlsFiles(cert: string | undefined, key: string | undefined): TlsFiles | null {
  if (!cert && !key) return null;
  if (!cert || !key) throw new InvalidArgumentError('--tls-cert and --tls-key go together (or ROSET_TLS_CERT and ROSET_TLS_KEY): give both, or neither');
  const files = { certFile: path.resolve(cert), keyFile: path.resolve(key) };
  for (const [flag, file] of [['--tls-cert', files.certFile], ['--tls-key', files.keyFile]] as const) {
    try {
      accessSync(file, constants.R_OK);
    } catch (err) {
      throw new InvalidArgumentError(`${flag} ${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
    }
  }
  return files;
}
