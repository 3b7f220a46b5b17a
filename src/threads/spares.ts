import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { CkptError } from '../errors.js';
import { workerUrl } from './worker-url.js';

/**
 * Worker threads started ahead of need. A worker takes 40-90 ms of CPU to start, and a pull or
 * a build knows it will want some before it has read its manifest or its checkpoint (the CLI
 * before it has even loaded its own code), while the machine's other cores are idle: started then,
 * they are ready when the first layer's bytes arrive. A spare waits for its job in a message, and
 * a worker that finished one may wait for the next. An idle spare does not keep the process alive.
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

const found = new Set<WorkerModule>();

function spawn(module: WorkerModule): Worker {
  const url = workerUrl(module);
  // Asked once: a worker whose file is missing fails in its thread with a bare "Cannot find module".
  if (!found.has(module)) {
    if (!existsSync(url)) {
      throw new CkptError('NOT_FOUND', "ckpt's worker module is missing: a bundler must leave ckpt-image external, its workers are files of their own", {
        subject: fileURLToPath(url),
      });
    }
    found.add(module);
  }
  return new Worker(url);
}

/** Keeps `worker` idle in the pool of `module`. */
function keep(module: WorkerModule, worker: Worker): void {
  const spares = pool(module);
  // One that fails or stops is dropped: a job then starts its own, which reports any failure.
  const drop = (): void => {
    const at = spares.indexOf(worker);
    if (at >= 0) spares.splice(at, 1);
  };
  worker.on('error', drop).on('exit', drop);
  worker.unref();
  spares.push(worker);
}

/** Starts workers of `module` until `count` are idle. */
export function startSpareWorkers(module: WorkerModule, count: number): void {
  while (pool(module).length < count) keep(module, spawn(module));
}

/**
 * Takes back a worker whose job ended well, for the next job, rid of the listeners its job added:
 * a layer after the first few then costs no worker start-up, nor fresh memory for its buffers.
 */
export function returnWorker(module: WorkerModule, worker: Worker): void {
  worker.removeAllListeners('message').removeAllListeners('error').removeAllListeners('exit');
  keep(module, worker);
}

/** An idle spare, or a new worker; either waits for its job in a message. */
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
