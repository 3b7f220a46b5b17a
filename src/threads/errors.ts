import { CkptError, type ErrorCode } from '../errors.js';

/** A failure as it crosses from a worker thread to the main thread (structured clone keeps no classes). */
export interface ThreadError {
  code?: ErrorCode;
  message: string;
  subject?: string;
  name?: string;
  /** A system error's code (ENOSPC...), which fromSystemError() maps for the file the caller knows. */
  errno?: string;
}

export function errorToThread(err: unknown): ThreadError {
  if (err instanceof CkptError) {
    const prefix = err.subject ? `${err.subject}: ` : '';
    const message = err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message;
    return { code: err.code, message, subject: err.subject };
  }
  if (err instanceof Error) {
    const errno = (err as NodeJS.ErrnoException).code;
    return { message: err.message, name: err.name, ...(typeof errno === 'string' ? { errno } : {}) };
  }
  return { message: String(err) };
}

/** The error a worker reported, as the class the rest of ckpt matches on. */
export function errorFromThread(err: ThreadError): Error {
  if (err.code) return new CkptError(err.code, err.message, { subject: err.subject });
  const out: NodeJS.ErrnoException = new Error(err.message);
  if (err.name) out.name = err.name;
  if (err.errno) out.code = err.errno;
  return out;
}
