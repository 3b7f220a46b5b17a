import { CkptError } from '../errors.js';

/**
 * Waits for `work`, a promise other requests may share (a connection's set-up, a token), giving
 * up for this caller alone when its signal fires: ABORTED with `message`; `work` goes on.
 */
export function abortable<T>(work: Promise<T>, signal: AbortSignal | undefined, subject: string, message = 'operation aborted'): Promise<T> {
  if (!signal) return work;
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(new CkptError('ABORTED', message, { subject, cause: signal.reason }));
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
