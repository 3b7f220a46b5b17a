#!/usr/bin/env node
/**
 * The CLI's entry (bundled as dist/cli/ckpt.js). Layers are written and decoded on worker threads
 * that each take 40-90 ms of CPU to start; this module is small, so they start here, on the
 * cores left idle while Node loads and compiles the rest of the CLI (main.ts, some 0.25 s), and are
 * ready when the first bytes arrive.
 */
import { startSpareWorkers } from '../threads/spares.js';
import { sparesForPull } from '../unpack/options.js';

const args = process.argv.slice(2);
// A guess from the words alone; a wrong one costs only idle workers, which the command stops or
// leaves behind at exit.
if (!args.some((arg) => arg === '-h' || arg === '--help')) {
  if (args[0] === 'pull' && !args.at(-1)?.startsWith('oci:')) startSpareWorkers('unpack/zstd-worker', sparesForPull());
  // gzip layers compress on the main thread. One page worker serves any build; one that finds
  // page files to read by offset starts the others it can use (build.ts).
  const gzip = args.some((arg, i) => arg === '--compression=gzip' || (arg === '--compression' && args[i + 1] === 'gzip'));
  if ((args[0] === 'push' || args[0] === 'build') && !gzip) startSpareWorkers('image/page-worker', 1);
}
await import('./main.js');
