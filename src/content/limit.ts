import { CkptError } from '../errors.js';

/** Blobs moved or checked at once unless told otherwise: what registries take in parallel without complaint. */
export const DEFAULT_CONCURRENCY = 4;

/** A count of things done at once: at least one, or nothing would ever start. */
export function assertConcurrency(concurrency: number): void {
  if (!Number.isInteger(concurrency) || concurrency < 1) {
    throw new CkptError('USAGE', `concurrency must be a whole number of at least 1 (got ${concurrency})`);
  }
}

/** Runs at most `concurrency` of the given tasks at once (a small p-limit). */
export function limiter(concurrency: number): <T>(task: () => Promise<T>) => Promise<T> {
  assertConcurrency(concurrency);
  let active = 0;
  const waiting: Array<() => void> = [];
  return async <T>(task: () => Promise<T>): Promise<T> => {
    if (active >= concurrency) await new Promise<void>((start) => waiting.push(start));
    active++;
    try {
      return await task();
    } finally {
      active--;
      waiting.shift()?.();
    }
  };
}
