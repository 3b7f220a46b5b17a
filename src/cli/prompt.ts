import { CkptError } from '../errors.js';

/** Whether the user can be asked: standard input is a terminal. */
export function canPrompt(): boolean {
  return process.stdin.isTTY === true;
}

/**
 * Asks for one line on the terminal, the question on stderr. `hidden` reads it without echo, as
 * podman login reads a password: the terminal goes to raw mode, so Ctrl-C arrives as a byte and
 * is raised as SIGINT for the command's own handlers, and backspace is handled here.
 */
export async function prompt(question: string, hidden: boolean, signal: AbortSignal): Promise<string> {
  const input = process.stdin;
  // What messages name: `password prompt: interrupted (SIGINT)`.
  const subject = `${question.replace(/:\s*$/, '').toLowerCase()} prompt`;
  process.stderr.write(question);
  if (hidden) input.setRawMode(true);
  input.setEncoding('utf8');
  try {
    return await new Promise<string>((resolve, reject) => {
      let line = '';
      const end = (): void => {
        input.off('data', onData).off('end', onEnd);
        signal.removeEventListener('abort', onAbort);
        input.pause();
      };
      const onAbort = (): void => {
        end();
        reject(new CkptError('ABORTED', 'operation aborted', { subject, cause: signal.reason }));
      };
      const onEnd = (): void => {
        end();
        reject(new CkptError('USAGE', 'standard input ended before an answer', { subject }));
      };
      const onData = (chunk: string): void => {
        for (let at = 0; at < chunk.length; at++) {
          const char = chunk.charAt(at);
          if (char === '\r' || char === '\n') {
            end();
            // Typed ahead (a user name and its password at once): left for the next question.
            const rest = chunk.slice(at + (chunk.startsWith('\r\n', at) ? 2 : 1));
            if (rest !== '') input.unshift(rest);
            resolve(line);
            return;
          }
          if (char === '\u0003') {
            process.kill(process.pid, 'SIGINT');
            return;
          }
          if (char === '\u0004' && line === '') return onEnd();
          if (char === '\u007f' || char === '\b') line = line.slice(0, -1);
          else if (char >= ' ') line += char;
        }
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      input.on('data', onData).once('end', onEnd);
      input.resume();
    });
  } finally {
    if (hidden) {
      input.setRawMode(false);
      process.stderr.write('\n');
    }
  }
}
