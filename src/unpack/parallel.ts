import { setMaxListeners } from 'node:events';
import { CkptError, isAbortError, isCkptError } from '../errors.js';

/**
 * Runs `work` over `items`, at most `limit` at a time, results in the order of `items`. The first
 * failure aborts the signal handed to the others, and the call settles only when every started
 * task has, so that nothing is still writing when the caller cleans up.
 */
export async function mapLimited<T, R>(
  items: readonly T[],
  limit: number,
  signal: AbortSignal | undefined,
  work: (item: T, signal: AbortSignal) => Promise<R>,
): Promise<R[]> {
  const stop = new AbortController();
  const combined = signal ? AbortSignal.any([signal, stop.signal]) : stop.signal;
  // Every request and stream of the work listens to it; many at once are normal, not a leak.
  setMaxListeners(256, combined);
  const results = new Array<R>(items.length);
  const failures: unknown[] = [];
  let next = 0;

  async function worker(): Promise<void> {
    while (next < items.length && !combined.aborted) {
      const index = next++;
      try {
        results[index] = await work(items[index] as T, combined);
      } catch (err) {
        failures.push(err);
        stop.abort(err);
      }
    }
  }

  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failures.length > 0) {
    // The others failed because they were stopped; the first real cause is what the user needs.
    throw failures.find((err) => !isAbort(err)) ?? failures[0];
  }
  if (next < items.length) throw new CkptError('ABORTED', 'operation aborted');
  return results;
}

function isAbort(err: unknown): boolean {
  return isCkptError(err, 'ABORTED') || isAbortError(err);
}
