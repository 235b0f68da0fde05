/**
 * A failure-injecting ObjectStore for tests: wraps a real store and fails chosen
 * operations on chosen keys, once, N times, every Nth call or until cleared, with a
 * transient (5xx-like), permanent (403-like) or precondition failure.
 *
 * `putFile` is several requests (a copy, or a PUT per part): its faults fire inside
 * each request of the upload, through the request runner, where the retry layer above
 * retries them one by one; each request is recorded as one `putFile` call.
 */
import { StoreError } from '../../src/errors/index.js';
import { runOnce, type FileUpload, type FileUploadOptions, type ObjectStore, type PutFileOptions, type RequestRunner } from '../../src/store/types.js';

export type FaultKind = 'transient' | 'forbidden' | 'precondition';

export interface FaultRule {
  /** Method name, e.g. 'putFile', 'putIfAbsent', 'get'; '*' for all. */
  op: string;
  keyIncludes?: string;
  kind: FaultKind;
  /** Fail this many matching calls, then pass (default: forever). */
  times?: number;
  /** Fail only every Nth matching call. */
  every?: number;
}

export interface FaultyStore extends ObjectStore {
  rules: FaultRule[];
  calls: Array<{ op: string; key: string; failed: boolean }>;
}

function errorFor(kind: FaultKind, op: string, key: string): StoreError {
  switch (kind) {
    case 'transient': return new StoreError('STORAGE_ERROR', `injected 503 on ${op} ${key}`, { key, op, status: 503, s3Code: 'SlowDown' });
    case 'forbidden': return new StoreError('STORAGE_ERROR', `injected 403 on ${op} ${key}`, { key, op, status: 403, s3Code: 'AccessDenied' });
    case 'precondition': return new StoreError('PRECONDITION_FAILED', `injected 412 on ${op} ${key}`, { key, op, status: 412 });
    default: { const never: never = kind; throw new Error(String(never)); }
  }
}

export function faulty(inner: ObjectStore): FaultyStore {
  const rules: FaultRule[] = [];
  const calls: FaultyStore['calls'] = [];
  const seen = new Map<FaultRule, number>();
  /** Records the call, or throws the fault of the first rule that fires on it. */
  const check = (op: string, key: string): void => {
    for (const r of rules) {
      if ((r.op !== '*' && r.op !== op) || (r.keyIncludes && !key.includes(r.keyIncludes))) continue;
      const n = (seen.get(r) ?? 0) + 1;
      seen.set(r, n);
      const fires = r.every ? n % r.every === 0 : r.times === undefined || n <= r.times;
      if (fires) {
        calls.push({ op, key, failed: true });
        throw errorFor(r.kind, op, key);
      }
    }
    calls.push({ op, key, failed: false });
  };
  const wrap = (op: string) => async (...args: unknown[]): Promise<unknown> => {
    const key = typeof args[0] === 'string' ? args[0] : '';
    if (op === 'putFile') {
      const options = (args[2] ?? {}) as PutFileOptions;
      const outer = options.request ?? runOnce;
      const request: RequestRunner = (rop, rkey, fn) => outer(rop, rkey, async () => {
        check('putFile', key);
        return fn();
      });
      return inner.putFile(key, args[1] as string, { ...options, request });
    }
    check(op, key);
    return (inner as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[op]!.apply(inner, args);
  };
  // Each request of an upload of a file while written is checked as one
  // `startFileUpload` call, as each request of `putFile` is.
  const startFileUpload = (filePath: string, options: FileUploadOptions = {}): FileUpload => {
    const outer = options.request ?? runOnce;
    const request: RequestRunner = (rop, rkey, fn) => outer(rop, rkey, async () => {
      check('startFileUpload', rkey);
      return fn();
    });
    return inner.startFileUpload(filePath, { ...options, request });
  };
  const ops = ['put', 'putIfAbsent', 'putIfMatch', 'putFile', 'get', 'head', 'list', 'delete', 'createMultipartUpload', 'uploadPart',
    'completeMultipartUpload', 'abortMultipartUpload', 'listMultipartUploads', 'abortOwnUploads'];
  const store = { description: `faulty ${inner.description}`, capabilities: inner.capabilities, close: () => inner.close(), rules, calls } as unknown as FaultyStore;
  for (const op of ops) (store as unknown as Record<string, unknown>)[op] = wrap(op);
  (store as unknown as Record<string, unknown>).startFileUpload = startFileUpload;
  return store;
}
