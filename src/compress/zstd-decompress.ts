import { Transform, type TransformCallback } from 'node:stream';
import zstd from 'zstd-napi/binding.js';

/** Bytes out per push: zstd's own recommendation for a streaming output buffer (128 KiB). */
const OUT = zstd.dStreamOutSize();

/**
 * zstd decompression that waits for its reader. zstd-napi's DecompressStream pushes all that one
 * input chunk expands to before it takes the next, ignoring backpressure: 64 KiB of compressed
 * zeros become gigabytes in memory (a pull of a layer of empty pages, or a decompression bomb).
 * Here the rest of a chunk waits until the reader asks for more.
 */
export class ZstdDecompress extends Transform {
  readonly #dctx = new zstd.DCtx();
  #inFrame = false;
  /** The rest of an input chunk, held while the reader has enough, and its write's callback. */
  #held: { src: Buffer; done: TransformCallback } | undefined;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.#decompress(chunk, done);
  }

  override _read(size: number): void {
    const held = this.#held;
    this.#held = undefined;
    if (held) this.#decompress(held.src, held.done);
    // With the chunk used up, Transform may have kept its write's callback for this read to release.
    if (!this.#held) super._read(size);
  }

  override _flush(done: TransformCallback): void {
    done(this.#inFrame ? new Error('the data ends inside a zstd frame') : undefined);
  }

  #decompress(input: Buffer, done: TransformCallback): void {
    let src = input;
    try {
      for (;;) {
        const out = Buffer.allocUnsafe(OUT);
        const [remaining, produced, consumed] = this.#dctx.decompressStream(out, src);
        src = src.subarray(consumed);
        const wanted = produced === 0 || this.push(out.subarray(0, produced));
        // The chunk is used up once zstd takes no more and had room for all it could give.
        if (src.length === 0 && (produced < out.length || remaining === 0)) {
          this.#inFrame = remaining !== 0;
          done();
          return;
        }
        if (!wanted) {
          this.#held = { src, done };
          return;
        }
      }
    } catch (err) {
      done(err as Error);
    }
  }
}
