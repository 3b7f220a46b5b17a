import { Worker } from 'node:worker_threads';
import { workerUrl } from './worker-url.js';

/**
 * Worker threads started ahead of need. A worker takes 40-90 ms of CPU to start, and a pull or
 * a build knows it will want some before it has read its manifest or its checkpoint (the CLI
 * before it has even loaded its own code), while the machine's other cores are idle: started then,
 * they are ready when the first layer's bytes arrive. A spare waits for its job in its first
 * message. An idle spare does not keep the process alive.
 */
export type WorkerModule = 'unpack/zstd-worker' | 'image/page-worker';

const SPARES: unique symbol = Symbol.for('ckpt.spare-workers');
// The CLI's entry and its main bundle each hold a copy of this module (scripts/bundle.mjs): the
// lists they share are a global.
const holder = globalThis as typeof globalThis & { [SPARES]?: Map<WorkerModule, Worker[]> };
const pools = (holder[SPARES] ??= new Map<WorkerModule, Worker[]>());

function pool(module: WorkerModule): Worker[] {
  let spares = pools.get(module);
  if (!spares) pools.set(module, (spares = []));
  return spares;
}

function spawn(module: WorkerModule): Worker {
  return new Worker(workerUrl(module));
}

/** Starts workers of `module` until `count` are idle. */
export function startSpareWorkers(module: WorkerModule, count: number): void {
  const spares = pool(module);
  while (spares.length < count) {
    const worker = spawn(module);
    // One that fails to start is dropped: a job then starts its own, which reports the failure.
    const drop = (): void => {
      const at = spares.indexOf(worker);
      if (at >= 0) spares.splice(at, 1);
    };
    worker.on('error', drop).on('exit', drop);
    worker.unref();
    spares.push(worker);
  }
}

/** An idle spare, or a new worker; either waits for its job in its first message. */
export function takeWorker(module: WorkerModule): Worker {
  const spare = pool(module).shift();
  if (!spare) return spawn(module);
  spare.removeAllListeners('error').removeAllListeners('exit');
  spare.ref();
  return spare;
}

/** Stops the spares of `module` nobody took. */
export async function stopSpareWorkers(module: WorkerModule): Promise<void> {
  await Promise.all(pool(module).splice(0).map((worker) => worker.terminate()));
}
