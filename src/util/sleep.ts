/**
 * The one `sleep` of the code base (tests use it too): a promise that resolves after
 * `ms` milliseconds, or rejects with the signal's reason once `signal` aborts.
 *
 * Invariant: a sleep leaves nothing behind: an aborted one clears its timer, a finished
 * one removes its abort listener.
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
