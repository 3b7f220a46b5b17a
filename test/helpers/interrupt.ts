import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { CKPT } from './tree.js';

/**
 * Runs the CLI with `args`, sends it SIGINT after `afterMs`, and says how it ended: its exit code,
 * what it printed on stderr, and how long it took to end once signalled. stdin stays an open pipe
 * no one writes to, as a terminal where no one types.
 */
export async function interruptAfter(args: string[], afterMs: number): Promise<{ code: number | null; stderr: string; ms: number }> {
  const child = spawn(process.execPath, [CKPT, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  await sleep(afterMs);
  const sent = Date.now();
  child.kill('SIGINT');
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, stderr, ms: Date.now() - sent };
}
