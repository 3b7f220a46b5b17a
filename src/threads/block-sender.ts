/**
 * Bytes handed to a worker thread in a few reusable blocks: chunks are copied into the block being
 * filled, a full block is transferred (not copied again), and the worker gives it back (`give`)
 * once it has read it. At most `count` blocks are out, so the bytes in flight stay bounded however
 * fast the producer is, and no fresh memory is touched after the first blocks.
 */
export class BlockSender {
  readonly #send: (data: ArrayBuffer, length: number) => void;
  readonly #free: ArrayBuffer[] = [];
  #filling: Uint8Array | undefined;
  #filled = 0;
  #freed: (() => void) | undefined;
  #stopped = false;

  /** `send` transfers a block holding `length` bytes to the worker. */
  constructor(send: (data: ArrayBuffer, length: number) => void, count: number, size: number) {
    this.#send = send;
    for (let i = 0; i < count; i++) this.#free.push(new ArrayBuffer(size));
  }

  /** Copies what fits into the free blocks now; returns the bytes taken (all of them once stopped). */
  copy(chunk: Uint8Array): number {
    let from = 0;
    while (from < chunk.length && !this.#stopped) {
      if (!this.#filling) {
        const buffer = this.#free.pop();
        if (!buffer) break;
        this.#filling = new Uint8Array(buffer);
        this.#filled = 0;
      }
      const n = Math.min(chunk.length - from, this.#filling.length - this.#filled);
      this.#filling.set(chunk.subarray(from, from + n), this.#filled);
      this.#filled += n;
      from += n;
      if (this.#filled === this.#filling.length) this.flush();
    }
    // Once stopped the bytes are dropped: whoever stopped it reports why.
    return this.#stopped ? chunk.length : from;
  }

  /** Copies the whole chunk, waiting for blocks to come back; one write at a time. */
  async write(chunk: Uint8Array): Promise<void> {
    if (this.#freed) throw new Error('BlockSender: a write is already waiting for a block');
    for (let from = this.copy(chunk); from < chunk.length; ) {
      await new Promise<void>((ok) => (this.#freed = ok));
      from += this.copy(chunk.subarray(from));
    }
  }

  /** Sends the block being filled, full or not. */
  flush(): void {
    const filling = this.#filling;
    if (!filling) return;
    this.#filling = undefined;
    if (!this.#stopped) this.#send(filling.buffer as ArrayBuffer, this.#filled);
  }

  /** A block the worker has read. */
  give(data: ArrayBuffer): void {
    this.#free.push(data);
    this.#wake();
  }

  /** Drops every later byte and releases a waiting `write`. */
  stop(): void {
    this.#stopped = true;
    this.#wake();
  }

  #wake(): void {
    const freed = this.#freed;
    this.#freed = undefined;
    freed?.();
  }
}
