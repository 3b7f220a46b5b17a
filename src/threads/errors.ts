import { CkptError, type ErrorCode } from '../errors.js';

/** A failure as it crosses from a worker thread to the main thread (structured clone keeps no classes). */
export interface ThreadError {
  code?: ErrorCode;
  message: string;
  subject?: string;
  name?: string;
}

export function errorToThread(err: unknown): ThreadError {
  if (err instanceof CkptError) {
    const prefix = err.subject ? `${err.subject}: ` : '';
    const message = err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message;
    return { code: err.code, message, subject: err.subject };
  }
  if (err instanceof Error) return { message: err.message, name: err.name };
  return { message: String(err) };
}

/** The error a worker reported, as the class the rest of ckpt matches on. */
export function errorFromThread(err: ThreadError): Error {
  if (err.code) return new CkptError(err.code, err.message, { subject: err.subject });
  const out = new Error(err.message);
  if (err.name) out.name = err.name;
  return out;
}
