import { CommanderError } from 'commander';
import { CkptError, ExitCode } from '../errors.js';
// Credentials that a lower layer's error might quote back: never printed.
import { redact } from '../registry/errors.js';


/**
 * One line, whatever a lower layer put in its message (OpenSSL ends some with a newline), and no
 * control characters: a registry's words in it must not move the cursor or colour the terminal.
 */
function oneLine(message: string): string {
  // eslint-disable-next-line no-control-regex -- control characters are what this removes
  return message.replace(/\s*\n\s*/g, ' ').replace(/[\u0000-\u001f\u007f-\u009f]/g, '').trim();
}

/** Prints one line for a failure and returns the exit code it maps to. */
export function reportError(err: unknown, write: (line: string) => void): number {
  if (err instanceof CommanderError) return err.exitCode === 0 ? ExitCode.ok : ExitCode.usage;
  if (err instanceof CkptError) {
    write(`ckpt: ${oneLine(redact(err.message))}`);
    return err.exitCode;
  }
  const message = err instanceof Error ? err.message : String(err);
  write(`ckpt: ${oneLine(redact(message))}`);
  if (process.env.CKPT_DEBUG && err instanceof Error && err.stack) write(redact(err.stack));
  return ExitCode.failure;
}
