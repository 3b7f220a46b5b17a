import type { Readable } from 'node:stream';

/** Buffers a reader fills in turn: the chunk on the wire and the one being read behind it. */
const BUFFERS = 2;

/**
 * Cuts a stream into chunks of an exact size (the last one shorter, the one after it empty), so
 * that an upload holds a bounded window of bytes it can send again after a broken connection.
 * Chunks are copied into buffers allocated once and used in turn: fresh multi-MiB allocations cost
 * more in page faults than the copy. A chunk stays valid until `read` has been called twice more,
 * which an upload that sends each chunk before asking for the one after the next respects.
 */
export class ChunkReader {
  readonly #source: Readable;
  readonly #iterator: AsyncIterator<unknown>;
  readonly #buffers: Buffer[] = [];
  #turn = 0;
  /** What the source gave beyond the last chunk: a piece, and how much of it was used. */
  #piece: Buffer | undefined;
  #pieceUsed = 0;
  #ended = false;

  constructor(source: Readable) {
    this.#source = source;
    this.#iterator = source[Symbol.asyncIterator]();
  }

  /** True once the source has ended and everything read from it was handed out. */
  get done(): boolean {
    return this.#ended && this.#piece === undefined;
  }

  async read(size: number): Promise<Buffer> {
    const into = this.#buffer(size);
    let filled = 0;
    while (filled < size) {
      if (!this.#piece) {
        if (this.#ended) break;
        const next = await this.#iterator.next();
        if (next.done) {
          this.#ended = true;
          break;
        }
        this.#piece = Buffer.isBuffer(next.value) ? next.value : Buffer.from(next.value as Uint8Array);
        this.#pieceUsed = 0;
      }
      const copied = this.#piece.copy(into, filled, this.#pieceUsed, Math.min(this.#piece.length, this.#pieceUsed + size - filled));
      filled += copied;
      this.#pieceUsed += copied;
      if (this.#pieceUsed === this.#piece.length) this.#piece = undefined;
    }
    return into.subarray(0, filled);
  }

  /** Stops reading and releases the source. */
  destroy(err?: Error): void {
    this.#source.destroy(err);
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
