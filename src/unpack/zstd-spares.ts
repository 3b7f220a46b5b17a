import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { workerUrl } from '../threads/worker-url.js';
import { DEFAULT_CONCURRENCY } from './options.js';

/**
 * zstd layer workers (zstd-worker.ts) started ahead of need. A worker takes about 0.1 s of CPU to
 * start, and a pull knows it will want some before it has read its manifest (the CLI before it has
 * even loaded its own code), while the machine's other cores are idle: started then, they are
 * ready when the first layer's bytes arrive. An idle spare does not keep the process alive.
 */
const SPARES: unique symbol = Symbol.for('ckpt.zstd-spare-workers');
// The CLI's entry and its main bundle each hold a copy of this module (scripts/bundle.mjs): the
// list they share is a global.
const holder = globalThis as typeof globalThis & { [SPARES]?: Worker[] };
const spares = (holder[SPARES] ??= []);

function spawn(): Worker {
  return new Worker(workerUrl('unpack/zstd-worker'));
}

/** Starts workers until `count` are idle. */
export function startSpareZstdWorkers(count: number): void {
  while (spares.length < count) {
    const worker = spawn();
    // One that fails to start is dropped: a layer then starts its own, which reports the failure.
    const drop = (): void => {
      const at = spares.indexOf(worker);
      if (at >= 0) spares.splice(at, 1);
    };
    worker.on('error', drop).on('exit', drop);
    worker.unref();
    spares.push(worker);
  }
}

/** An idle spare, or a new worker; either waits for its layer (a `layer` message). */
export function takeZstdWorker(): Worker {
  const spare = spares.shift();
  if (!spare) return spawn();
  spare.removeAllListeners('error').removeAllListeners('exit');
  spare.ref();
  return spare;
}

/** Stops the spares nobody took. */
export async function stopSpareZstdWorkers(): Promise<void> {
  await Promise.all(spares.splice(0).map((worker) => worker.terminate()));
}

/** How many spares a pull of `concurrency` layers at once can use: no more than the cores. */
export function sparesForPull(concurrency = DEFAULT_CONCURRENCY): number {
  return Math.min(availableParallelism(), concurrency);
}
