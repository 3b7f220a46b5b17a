import type { Readable } from 'node:stream';

/**
 * Cuts a stream into chunks of an exact size (the last one shorter, the one after it empty), so
 * that an upload holds a bounded window of bytes it can send again after a broken connection.
 */
export class ChunkReader {
  readonly #source: Readable;
  readonly #iterator: AsyncIterator<unknown>;
  #pending: Buffer[] = [];
  #pendingSize = 0;
  #ended = false;

  constructor(source: Readable) {
    this.#source = source;
    this.#iterator = source[Symbol.asyncIterator]();
  }

  /** True once the source has ended and everything read from it was handed out. */
  get done(): boolean {
    return this.#ended && this.#pendingSize === 0;
  }

  async read(size: number): Promise<Buffer> {
    while (this.#pendingSize < size && !this.#ended) {
      const next = await this.#iterator.next();
      if (next.done) {
        this.#ended = true;
        break;
      }
      const buf = Buffer.isBuffer(next.value) ? next.value : Buffer.from(next.value as Uint8Array);
      this.#pending.push(buf);
      this.#pendingSize += buf.length;
    }
    const all = this.#pending.length === 1 ? (this.#pending[0] as Buffer) : Buffer.concat(this.#pending, this.#pendingSize);
    const chunk = all.subarray(0, size);
    // The remainder is copied so that the chunk does not keep a larger allocation alive.
    const rest = all.length > size ? Buffer.from(all.subarray(size)) : undefined;
    this.#pending = rest ? [rest] : [];
    this.#pendingSize = rest?.length ?? 0;
    return chunk;
  }

  /** Stops reading and releases the source. */
  destroy(err?: Error): void {
    this.#source.destroy(err);
  }
}
