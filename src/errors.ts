/**
 * Every failure ckpt reports is a CkptError with a stable `code`. Callers match on the code, never
 * on the message; the CLI maps codes to exit codes through EXIT_CODES alone.
 */

/** Exit codes of the `ckpt` binary, one per class of failure. Documented in the README. */
export const ExitCode = {
  ok: 0,
  /** Anything not classified below (a bug, an unexpected system error). */
  failure: 1,
  /** Bad command line: unknown option, conflicting flags, malformed reference. */
  usage: 2,
  /** The input is not a usable checkpoint or image: corrupt, unsafe, unknown format. */
  badInput: 3,
  /** A file, tag, repository or blob that does not exist. */
  notFound: 4,
  /** Authentication failed or access was denied. */
  auth: 5,
  /** The network or the registry failed (after retries). */
  network: 6,
  /** Content did not match its digest or size. */
  integrity: 7,
  /** Reading or writing a local file failed (disk full, permission, a file changed while read, destination in the way). */
  io: 8,
  /** The operation was cancelled (AbortSignal, Ctrl-C). */
  aborted: 130,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

const EXIT_CODES = {
  USAGE: ExitCode.usage,
  INVALID_REFERENCE: ExitCode.usage,
  NOT_CHECKPOINT: ExitCode.badInput,
  CORRUPT_ARCHIVE: ExitCode.badInput,
  UNKNOWN_COMPRESSION: ExitCode.badInput,
  INVALID_METADATA: ExitCode.badInput,
  INVALID_MANIFEST: ExitCode.badInput,
  UNSAFE_PATH: ExitCode.badInput,
  NOT_LAYOUT: ExitCode.badInput,
  UNSUPPORTED: ExitCode.badInput,
  NOT_FOUND: ExitCode.notFound,
  UNAUTHORIZED: ExitCode.auth,
  DENIED: ExitCode.auth,
  REGISTRY_ERROR: ExitCode.network,
  NETWORK: ExitCode.network,
  DIGEST_MISMATCH: ExitCode.integrity,
  SIZE_MISMATCH: ExitCode.integrity,
  READ_FAILED: ExitCode.io,
  WRITE_FAILED: ExitCode.io,
  DESTINATION_EXISTS: ExitCode.io,
  ABORTED: ExitCode.aborted,
} as const satisfies Record<string, ExitCode>;

export type ErrorCode = keyof typeof EXIT_CODES;

export interface CkptErrorOptions {
  /** The file, directory or reference at fault, shown first in the message. */
  subject?: string;
  cause?: unknown;
}

export class CkptError extends Error {
  override readonly name = 'CkptError';
  readonly code: ErrorCode;
  readonly subject: string | undefined;
  /** What is wrong, without the subject `message` starts with. */
  readonly detail: string;

  constructor(code: ErrorCode, message: string, options: CkptErrorOptions = {}) {
    super(options.subject ? `${options.subject}: ${message}` : message, { cause: options.cause });
    this.code = code;
    this.subject = options.subject;
    this.detail = message;
  }

  get exitCode(): ExitCode {
    return EXIT_CODES[this.code];
  }
}

export function isCkptError(err: unknown, code?: ErrorCode): err is CkptError {
  return err instanceof CkptError && (code === undefined || err.code === code);
}

/**
 * Gives `stream` an error listener, so that an error it emits before its reader listens (the
 * reader awaits something else first, or never starts because the operation failed or was
 * aborted) does not end the process. The reader still gets the error through its own listeners.
 */
export function guardErrors<T extends { on(event: 'error', listener: () => void): unknown }>(stream: T): T {
  stream.on('error', () => undefined);
  return stream;
}

/**
 * An abort as Node or the web platform reports it: Node's AbortError (`ABORT_ERR`), or the
 * DOMException an AbortSignal aborted without a reason throws from `throwIfAborted()`.
 */
export function isAbortError(err: unknown): boolean {
  return err instanceof Error && (err.name === 'AbortError' || (err as NodeJS.ErrnoException).code === 'ABORT_ERR');
}

/** Turns a Node.js system error or an abort into a CkptError naming the file at fault; other errors pass through. */
export function fromSystemError(err: unknown, subject: string, writing = false): unknown {
  if (err instanceof CkptError || !(err instanceof Error)) return err;
  if (isAbortError(err)) return new CkptError('ABORTED', 'operation aborted', { subject, cause: err });
  const sys = err as NodeJS.ErrnoException;
  switch (sys.code) {
    case 'ENOENT':
      return new CkptError('NOT_FOUND', 'no such file or directory', { subject, cause: err });
    case 'EACCES':
    case 'EPERM':
      return new CkptError(writing ? 'WRITE_FAILED' : 'READ_FAILED', 'permission denied', { subject, cause: err });
    case 'ENOSPC':
      return new CkptError('WRITE_FAILED', 'no space left on device', { subject, cause: err });
    case 'EDQUOT':
      return new CkptError('WRITE_FAILED', 'disk quota exceeded', { subject, cause: err });
    case 'EROFS':
      return new CkptError('WRITE_FAILED', 'read-only file system', { subject, cause: err });
    case 'EISDIR':
      return new CkptError('READ_FAILED', 'is a directory', { subject, cause: err });
    case 'ENOTDIR':
      return new CkptError('READ_FAILED', 'not a directory', { subject, cause: err });
    default:
      if (sys.code && /^E[A-Z]+$/.test(sys.code)) {
        return new CkptError(writing ? 'WRITE_FAILED' : 'READ_FAILED', `${sys.code.toLowerCase()}: ${sys.message}`, {
          subject,
          cause: err,
        });
      }
      return err;
  }
}
