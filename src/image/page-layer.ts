import { type Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Worker } from 'node:worker_threads';
import type { TreeEntry } from '../checkpoint/entry.js';
import type { Store, TransferOptions } from '../content/target.js';
import { HashedReadable } from '../content/verify.js';
import { CkptError } from '../errors.js';
import { BlockSender } from '../threads/block-sender.js';
import { errorFromThread } from '../threads/errors.js';
import { returnWorker, takeWorker } from '../threads/spares.js';
import { LAYER_MEDIA_TYPE, type WrittenLayer } from './layer.js';
import { BLOCK_SIZE, type FromPageWorker, type PageLayerJob, type ToPageWorker } from './page-protocol.js';

/** Blocks of content on their way to a fed worker. */
const FEED_BLOCKS = 3;

/** The layer as the worker hands it over, with the digest and size it computed. */
class WorkerOutput extends HashedReadable {
  readonly #worker: Worker;
  #owed = 0;
  /** The worker went back to the pool for the next layer: it is no longer this stream's to stop. */
  #returned = false;
  done: Extract<FromPageWorker, { type: 'done' }> | undefined;

  /** `onFree` gets back the blocks a fed worker has read. */
  constructor(worker: Worker, onFree?: (data: ArrayBuffer) => void) {
    super();
    this.#worker = worker;
    worker.on('message', (message: FromPageWorker) => {
      switch (message.type) {
        case 'chunk':
          // Each block is answered once the stream has room for more: the worker's window moves.
          if (this.push(Buffer.from(message.data, 0, message.length))) this.post({ type: 'credit' });
          else this.#owed++;
          break;
        case 'free':
          onFree?.(message.data);
          break;
        case 'done':
          this.done = message;
          // Nothing more is said to it: it waits for the next layer. Not one this stream already
          // stopped (its store failed or it was aborted just before): that worker is going away.
          if (!this.destroyed) {
            returnWorker('image/page-worker', worker);
            this.#returned = true;
          }
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
    // Ends the worker unless it went back to the pool: it failed, or the layer was aborted.
    this.once('close', () => {
      if (!this.#returned) void worker.terminate();
    });
  }

  /** Sends a block back to the worker to be filled again (it is detached here). */
  override recycle(chunk: Buffer): void {
    const block = chunk.buffer;
    if (block instanceof ArrayBuffer && block.byteLength === BLOCK_SIZE) this.post({ type: 'spare', data: block }, [block]);
  }

  override _read(): void {
    for (; this.#owed > 0; this.#owed--) this.post({ type: 'credit' });
  }

  post(message: ToPageWorker, transfer: ArrayBuffer[] = []): void {
    if (!this.destroyed && !this.done) this.#worker.postMessage(message, transfer);
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
 * Runs a page worker for `job` and stores what it writes; `onFree` gets back the blocks a fed
 * worker has read. The worker waits for the store to take its output (a few MiB in flight), so
 * memory stays bounded however slow the store is.
 */
function startPageLayer(
  job: PageLayerJob,
  store: Store,
  transfer: TransferOptions,
  onFree?: (data: ArrayBuffer) => void,
): { output: WorkerOutput; written: Promise<WrittenLayer> } {
  const { signal } = transfer;
  signal?.throwIfAborted();
  const output = new WorkerOutput(takeWorker('image/page-worker'), onFree);
  output.post({ type: 'job', job });
  // A failure before the store starts reading is not lost: its pipeline rejects with the stream's error.
  output.on('error', () => undefined);
  const onAbort = (): void => {
    output.destroy(new CkptError('ABORTED', 'operation aborted'));
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  const written = (async (): Promise<WrittenLayer> => {
    try {
      const desc = await store.ingest(LAYER_MEDIA_TYPE[job.compression], output, transfer);
      return { role: 'pages', desc, diffId: output.done?.diffId ?? desc.digest };
    } catch (err) {
      output.destroy();
      throw err;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  })();
  return { output, written };
}

/**
 * Writes a memory-pages layer from files read by offset, on a worker thread of its own: reading
 * the files, the tar framing, both sha256 and zstd happen there, so layers compress side by side
 * on every core and the main thread only moves compressed bytes into the store.
 */
export async function writePageLayer(job: Required<PageLayerJob>, store: Store, transfer: TransferOptions): Promise<WrittenLayer> {
  return startPageLayer(job, store, transfer).written;
}

/**
 * A memory-pages layer whose files the main thread reads from a source that cannot be read by
 * offset (a compressed archive, an image) and feeds to a page worker, which frames, hashes and
 * compresses them: the main thread is left with decompressing the source and the upload.
 */
export class PageLayerFeed {
  /** Bytes of file content added so far, for bounding the size of page layers. */
  contentBytes = 0;
  readonly #output: WorkerOutput;
  readonly #sender: BlockSender;
  /** Settles once the layer is stored, or with the worker's or the store's failure. */
  readonly written: Promise<WrittenLayer>;
  #failure: Error | undefined;

  constructor(job: Omit<PageLayerJob, 'entries'>, store: Store, transfer: TransferOptions) {
    const sender = new BlockSender((data, length) => output.post({ type: 'content', data, length }, [data]), FEED_BLOCKS, BLOCK_SIZE);
    const { output, written } = startPageLayer(job, store, transfer, (data) => sender.give(data));
    this.#output = output;
    this.#sender = sender;
    this.written = written;
    // The worker's failure stops the feeding at once; close() reports it.
    written.catch((err: unknown) => this.abort(err as Error));
  }

  /**
   * Feeds one file under its ustar `header`; resolves once its bytes are handed over. A failure
   * aborts the layer: the worker was told of bytes it will not get.
   */
  async add(entry: TreeEntry, header: Uint8Array, content: Readable | undefined): Promise<void> {
    try {
      await this.#feed(entry, header, content);
    } catch (err) {
      this.abort(err as Error);
      throw err;
    }
  }

  async #feed(entry: TreeEntry, header: Uint8Array, content: Readable | undefined): Promise<void> {
    this.contentBytes += entry.size;
    this.#output.post({ type: 'entry', header, size: entry.size });
    let fed = 0;
    const wrongSize = () => new CkptError('READ_FAILED', `${entry.path}: read ${fed} bytes of a ${entry.size}-byte file`, { subject: entry.path });
    if (content) {
      const sink = new Writable({
        // Room for a whole chunk of the source: piped, chunks come as they are, never concatenated.
        highWaterMark: BLOCK_SIZE,
        write: (chunk: Buffer, _encoding, done) => {
          fed += chunk.length;
          // Nothing past the announced size may reach the worker: it would corrupt the layer.
          if (this.#failure || fed > entry.size) done(this.#failure ?? wrongSize());
          else this.#sender.write(chunk).then(() => done(), done);
        },
      });
      try {
        await pipeline(content, sink);
      } catch (err) {
        throw this.#failure ?? err;
      }
    }
    this.#sender.flush();
    if (this.#failure) throw this.#failure;
    if (fed !== entry.size) throw wrongSize();
  }

  /** Ends the layer and waits until it is stored. */
  close(): Promise<WrittenLayer> {
    this.#output.post({ type: 'end' });
    return this.written;
  }

  /** Stops the worker; close() then fails with `err`. */
  abort(err: Error): void {
    this.#failure ??= err;
    this.#sender.stop();
    this.#output.destroy(err);
  }
}
