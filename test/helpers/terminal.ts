import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { CKPT } from './tree.js';

const quote = (arg: string) => `'${arg.replaceAll("'", "'\\''")}'`;

/**
 * Runs the CLI on a terminal (a pseudo-terminal that util-linux `script` opens) and types each
 * answer once the output so far matches its prompt, as a user would: after the question, not
 * before, so that the terminal's echo (or its absence) is what the user would see. Returns the
 * exit code and everything the terminal showed.
 */
export async function onTerminal(
  args: string[],
  answers: Array<[RegExp, string]>,
  env: Record<string, string> = {},
): Promise<{ code: number | null; output: string }> {
  const command = [process.execPath, CKPT, ...args].map(quote).join(' ');
  const child = spawn('script', ['-qefc', command, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let output = '';
  let next = 0;
  child.stdout.setEncoding('utf8').on('data', (text: string) => {
    output += text;
    const answer = answers[next];
    if (answer && answer[0].test(output)) {
      next++;
      child.stdin.write(answer[1]);
    }
  });
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, output };
}
