import { Readable, Writable } from 'node:stream';
import type { Worker } from 'node:worker_threads';
import { CkptError } from '../errors.js';
import type { TarEntry } from '../tar/extract.js';
import { BlockSender } from '../threads/block-sender.js';
import { errorFromThread } from '../threads/errors.js';
import { takeWorker } from '../threads/spares.js';
import type { FromZstdWorker, ToZstdWorker } from './zstd-protocol.js';

/** Compressed bytes in flight to the worker: a few buffers, filled and handed back in turn. */
const INPUT_BUFFERS = 3;
const INPUT_SIZE = 1 << 20;

/**
 * A zstd layer read on a worker thread of its own (zstd-worker.ts): compressed bytes go in through
 * `input`, entries come out of `entries()`, and a file's content is written by the worker straight
 * into the file the caller opened (`writeInto`) or, read through `open()`, sent back in chunks.
 * Layers then decompress side by side on every core, and the main thread keeps only the network
 * and the file-system decisions; the worker checks the blob's digest before the entries end. A few
 * MiB are in flight at most, whatever the layer.
 *
 * A failure (the worker's, the input's, an abort) stops the worker before any pending call
 * rejects, so that no file it was writing into is closed under it.
 */
export class ZstdLayerThread {
  /** Takes the layer's compressed bytes; its end says the blob was read whole, at its size. */
  readonly input: Writable;
  readonly #subject: string;
  readonly #signal: AbortSignal | undefined;
  readonly #worker: Worker;
  readonly #sender = new BlockSender((data, length) => this.#post({ type: 'input', data, length }, [data]), INPUT_BUFFERS, INPUT_SIZE);
  /** The worker's messages about entries, in order, for `entries()`. */
  readonly #queue: FromZstdWorker[] = [];
  #wake: (() => void) | undefined;
  #failure: unknown;
  #stopped: Promise<unknown> | undefined;
  readonly #onAbort = () => this.fail(new CkptError('ABORTED', 'operation aborted', { subject: this.#subject }));

  /** `digest` is the blob's: the worker checks it (fetch the blob with `digestCheckedByCaller`). `subject` names it in messages. */
  constructor(digest: string, subject: string, signal: AbortSignal | undefined) {
    this.#subject = subject;
    this.#signal = signal;
    this.#worker = takeWorker('unpack/zstd-worker');
    this.#worker.on('message', (message: FromZstdWorker) => this.#receive(message));
    this.#worker.on('error', (err) => this.fail(err));
    this.#worker.on('exit', (code) => this.fail(new CkptError('READ_FAILED', `layer worker stopped (exit code ${code})`, { subject })));
    this.#post({ type: 'layer', digest, subject });
    this.input = new Writable({
      // Chunks are taken at once while a buffer is free: no stream back-pressure per chunk.
      highWaterMark: INPUT_SIZE,
      write: (chunk: Buffer, _encoding, done) => {
        const taken = this.#sender.copy(chunk);
        if (taken === chunk.length) done();
        else void this.#sender.write(chunk.subarray(taken)).then(() => done());
      },
      final: (done) => {
        this.#sender.flush();
        this.#post({ type: 'end' });
        done();
      },
    });
    if (signal?.aborted) this.#onAbort();
    else signal?.addEventListener('abort', this.#onAbort, { once: true });
  }

  /** The layer's entries, in order, as readTar() gives them; a file's content may be read once. */
  async *entries(): AsyncGenerator<TarEntry> {
    for (;;) {
      const message = await this.#next();
      if (message.type === 'end') return;
      if (message.type !== 'entry') throw this.#unexpected(message);
      const { entry } = message;
      let content: Promise<unknown> | undefined;
      const once = <T>(start: () => T, wait: (value: T) => Promise<unknown>): T => {
        if (content) throw new Error(`content of ${entry?.path ?? ''} was already read`);
        const value = start();
        content = wait(value).catch(() => undefined);
        return value;
      };
      if (entry) {
        const file = entry.type === 'file';
        yield {
          entry,
          open: file ? () => once(() => this.#stream(), (stream) => this.#finished(stream)) : undefined,
          writeInto: file ? (fd: number, position: number) => once(() => this.#writeInto(fd, position), (written) => written) : undefined,
        };
      }
      // Content nobody read is skipped, as readTar() skips it.
      if (!content) {
        this.#post({ type: 'content', to: { kind: 'skip' } });
        content = this.#done();
      }
      await content;
    }
  }

  /** Stops the worker; every pending and later call fails with `err`. */
  fail(err: unknown): void {
    if (this.#failure !== undefined) return;
    this.#failure = err;
    this.#signal?.removeEventListener('abort', this.#onAbort);
    this.#stopped = this.#worker.terminate();
    this.#wake?.();
    this.#sender.stop();
  }

  /** Stops the worker and waits until it is gone. */
  async close(): Promise<void> {
    this.fail(new CkptError('ABORTED', 'the layer was closed', { subject: this.#subject }));
    await this.#stopped;
  }

  #receive(message: FromZstdWorker): void {
    if (message.type === 'free') {
      this.#sender.give(message.data);
    } else if (message.type === 'error') {
      this.fail(errorFromThread(message.error));
    } else {
      this.#queue.push(message);
      this.#wake?.();
    }
  }

  #post(message: ToZstdWorker, transfer: ArrayBuffer[] = []): void {
    if (this.#failure === undefined) this.#worker.postMessage(message, transfer);
  }

  /** The next message about entries; after a failure, once the worker has stopped, the failure. */
  async #next(): Promise<FromZstdWorker> {
    for (;;) {
      if (this.#failure !== undefined) {
        await this.#stopped;
        throw this.#failure;
      }
      const message = this.#queue.shift();
      if (message) return message;
      await new Promise<void>((ok) => (this.#wake = ok));
    }
  }

  async #done(): Promise<number> {
    const message = await this.#next();
    if (message.type !== 'done') throw this.#unexpected(message);
    return message.bytes;
  }

  async #writeInto(fd: number, position: number): Promise<number> {
    this.#post({ type: 'content', to: { kind: 'file', fd, position } });
    return this.#done();
  }

  #stream(): Readable {
    this.#post({ type: 'content', to: { kind: 'send' } });
    const stream: Readable = new Readable({
      read: () => {
        this.#next().then(
          (message) => {
            if (message.type === 'chunk') {
              this.#post({ type: 'credit' });
              stream.push(Buffer.from(message.data));
            } else if (message.type === 'done') stream.push(null);
            else stream.destroy(this.#unexpected(message));
          },
          (err: unknown) => stream.destroy(err as Error),
        );
      },
    });
    return stream;
  }

  /** Resolves when a content stream was read to its end; one dropped before fails the layer. */
  #finished(stream: Readable): Promise<void> {
    return new Promise((ok) => {
      stream.once('end', ok);
      stream.once('close', () => {
        if (!stream.readableEnded) this.fail(new CkptError('ABORTED', 'an entry was left unread', { subject: this.#subject }));
        ok();
      });
    });
  }

  #unexpected(message: FromZstdWorker): Error {
    return new Error(`zstd worker: unexpected ${message.type} message`);
  }
}

