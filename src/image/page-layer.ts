import { Worker } from 'node:worker_threads';
import type { Store, TransferOptions } from '../content/target.js';
import { HashedReadable } from '../content/verify.js';
import { CkptError } from '../errors.js';
import { errorFromThread } from '../threads/errors.js';
import { workerUrl } from '../threads/worker-url.js';
import { LAYER_MEDIA_TYPE, type WrittenLayer } from './layer.js';
import { BLOCK_SIZE, type FromPageWorker, type PageLayerJob } from './page-protocol.js';

/** The layer as the worker hands it over, with the digest and size it computed. */
class WorkerOutput extends HashedReadable {
  readonly #worker: Worker;
  #owed = 0;
  done: Extract<FromPageWorker, { type: 'done' }> | undefined;

  constructor(worker: Worker) {
    super();
    this.#worker = worker;
    worker.on('message', (message: FromPageWorker) => {
      switch (message.type) {
        case 'chunk':
          // Each block is answered once the stream has room for more: the worker's window moves.
          if (this.push(Buffer.from(message.data, 0, message.length))) worker.postMessage(null);
          else this.#owed++;
          break;
        case 'done':
          this.done = message;
          this.push(null);
          break;
        case 'error':
          this.destroy(errorFromThread(message.error));
          break;
      }
    });
    worker.once('error', (err) => this.destroy(err));
    worker.once('exit', (code) => {
      if (!this.done) this.destroy(new CkptError('READ_FAILED', `page layer worker stopped (exit code ${code})`));
    });
    // Ends the worker whatever happened: done, failed or aborted.
    this.once('close', () => void worker.terminate());
  }

  /** Sends a block back to the worker to be filled again (it is detached here). */
  override recycle(chunk: Buffer): void {
    const block = chunk.buffer;
    if (!this.done && block instanceof ArrayBuffer && block.byteLength === BLOCK_SIZE) this.#worker.postMessage(block, [block]);
  }

  override _read(): void {
    for (; this.#owed > 0; this.#owed--) this.#worker.postMessage(null);
  }

  get digest(): string {
    if (!this.done) throw new Error('page layer digest read before its end');
    return this.done.digest;
  }

  get size(): number {
    return this.done?.size ?? 0;
  }
}

/**
 * Writes a memory-pages layer on a worker thread of its own: reading the files, the tar framing,
 * both sha256 and zstd happen there, so layers compress side by side on every core and the main
 * thread only moves compressed bytes into the store. The worker waits for the store to take its
 * output (a few MiB in flight), so memory stays bounded however slow the store is.
 */
export async function writePageLayer(job: PageLayerJob, store: Store, transfer: TransferOptions): Promise<WrittenLayer> {
  const { signal } = transfer;
  signal?.throwIfAborted();
  const output = new WorkerOutput(new Worker(workerUrl('image/page-worker'), { workerData: job }));
  const onAbort = (): void => {
    output.destroy(new CkptError('ABORTED', 'operation aborted'));
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const desc = await store.ingest(LAYER_MEDIA_TYPE[job.compression], output, transfer);
    return { role: 'pages', desc, diffId: output.done?.diffId ?? desc.digest };
  } catch (err) {
    output.destroy();
    throw err;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}
