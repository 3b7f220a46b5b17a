import type { Readable } from 'node:stream';
import { HashedReadable } from '../content/verify.js';

/** Buffers a reader fills in turn: the chunk on the wire and the one being read behind it. */
const BUFFERS = 2;

/**
 * Cuts a stream into chunks of an exact size (the last one shorter, the one after it empty), so
 * that an upload holds a bounded window of bytes it can send again after a broken connection.
 * Chunks are copied into buffers allocated once and used in turn: fresh multi-MiB allocations cost
 * more in page faults than the copy. A chunk stays valid until `read` has been called twice more,
 * which an upload that sends each chunk before asking for the one after the next respects. The
 * source is read by 'data' events, which hand over its pieces as they are, where `read()` would
 * first concatenate whatever it holds.
 */
export class ChunkReader {
  readonly #source: Readable;
  readonly #buffers: Buffer[] = [];
  #turn = 0;
  readonly #pieces: Buffer[] = [];
  #queued = 0;
  /** Bytes of the first piece already handed out. */
  #used = 0;
  #wanted = 0;
  #ended = false;
  #error: Error | undefined;
  #wake: (() => void) | undefined;

  constructor(source: Readable) {
    this.#source = source;
    source.pause();
    source.on('data', (piece: Buffer | Uint8Array) => {
      const buffer = Buffer.isBuffer(piece) ? piece : Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength);
      this.#pieces.push(buffer);
      this.#queued += buffer.length;
      if (this.#queued - this.#used >= this.#wanted) source.pause();
      this.#notify();
    });
    source.once('end', () => {
      this.#ended = true;
      this.#notify();
    });
    source.once('error', (err) => {
      this.#error = err;
      this.#notify();
    });
    source.once('close', () => {
      if (!this.#ended) this.#error ??= new Error('stream closed before its end');
      this.#notify();
    });
  }

  /** True once the source has ended and everything read from it was handed out. */
  get done(): boolean {
    return this.#ended && this.#queued === this.#used;
  }

  async read(size: number): Promise<Buffer> {
    while (this.#queued - this.#used < size && !this.#ended) {
      if (this.#error) throw this.#error;
      this.#wanted = size;
      await new Promise<void>((wake) => {
        this.#wake = wake;
        this.#source.resume();
      });
    }
    if (this.#error) throw this.#error;
    const into = this.#buffer(size);
    let filled = 0;
    while (filled < size && this.#pieces.length > 0) {
      const piece = this.#pieces[0] as Buffer;
      const copied = piece.copy(into, filled, this.#used, Math.min(piece.length, this.#used + size - filled));
      filled += copied;
      this.#used += copied;
      if (this.#used === piece.length) {
        this.#pieces.shift();
        this.#queued -= piece.length;
        this.#used = 0;
        // Copied and forgotten: its producer may fill it again.
        if (this.#source instanceof HashedReadable) this.#source.recycle(piece);
      }
    }
    return into.subarray(0, filled);
  }

  /**
   * What is left of the stream, piece by piece as its source hands them over: not copied, so a
   * piece stays valid however long the caller holds it. `read` must not be called once this is.
   */
  async *rest(): AsyncGenerator<Buffer> {
    for (;;) {
      const piece = this.#pieces.shift();
      if (piece) {
        const unread = piece.subarray(this.#used);
        this.#queued -= piece.length;
        this.#used = 0;
        yield unread;
        continue;
      }
      if (this.#error) throw this.#error;
      if (this.#ended) return;
      this.#wanted = 1;
      await new Promise<void>((wake) => {
        this.#wake = wake;
        this.#source.resume();
      });
    }
  }

  /** Stops reading and releases the source. */
  destroy(err?: Error): void {
    this.#source.destroy(err);
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  #buffer(size: number): Buffer {
    const turn = this.#turn++ % BUFFERS;
    let buffer = this.#buffers[turn];
    if (!buffer || buffer.length < size) {
      buffer = Buffer.allocUnsafeSlow(size);
      this.#buffers[turn] = buffer;
    }
    return buffer;
  }
}
