#!/usr/bin/env node
/**
 * The CLI's entry (bundled as dist/cli/ckpt.js). A pull's layers decode on worker threads that each
 * take about 0.1 s of CPU to start; this module is small, so they start here, on the cores left idle
 * while Node loads and compiles the rest of the CLI (main.ts, some 0.25 s), and are ready when the
 * first layer's bytes arrive.
 */
import { sparesForPull, startSpareZstdWorkers } from '../unpack/zstd-spares.js';

const args = process.argv.slice(2);
// A guess from the words alone; a wrong one costs only idle workers, which pull() stops.
if (args[0] === 'pull' && !args.some((arg) => arg === '-h' || arg === '--help') && !args.at(-1)?.startsWith('oci:')) {
  startSpareZstdWorkers(sparesForPull());
}
await import('./main.js');
