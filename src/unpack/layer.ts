import { type Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { decompressor } from '../compress/codec.js';
import type { ProgressEvent, ReadOnlyTarget } from '../content/target.js';
import { isCkptError } from '../errors.js';
import type { Descriptor } from '../oci/schemas.js';
import type { LayerPlan } from './plan.js';

/** Progress is reported at most once per this many bytes (and at start and end). */
const PROGRESS_STEP = 1 << 20;

export interface LayerReadOptions {
  signal?: AbortSignal | undefined;
  onProgress?: ((event: ProgressEvent) => void) | undefined;
}

/**
 * Fetches a layer and hands its uncompressed tar stream to `use`; resolves with what `use` returns
 * once the blob has also been read whole and verified against its digest, so no caller ever treats
 * unverified content as complete.
 */
export async function readLayer<T>(
  target: ReadOnlyTarget,
  layer: LayerPlan,
  options: LayerReadOptions,
  use: (tar: Readable) => Promise<T>,
): Promise<T> {
  const { signal } = options;
  const blob = await target.fetch(layer.desc, { signal });
  const counter = new ProgressCounter(layer.desc, options.onProgress);
  const tar = decompressor(layer.compression);
  // The blob is piped into the decompressor by hand, not by pipeline(): after a failure to decode,
  // the rest of the blob is still read (below) to learn whether its digest was wrong.
  const verified = pipeline(blob, counter, signal ? { signal } : {});
  verified.catch(() => undefined);
  counter.on('error', (err) => tar.destroy(err));
  counter.pipe(tar);
  let result: T;
  try {
    result = await use(tar);
  } catch (err) {
    if (isCkptError(err, 'CORRUPT_ARCHIVE')) {
      // A flipped byte usually breaks decompression before the digest can be checked at the end;
      // the digest mismatch is the truer report, so the blob is read to its end to find out.
      counter.unpipe(tar);
      counter.resume();
      await verified;
    } else {
      blob.destroy();
    }
    throw err;
  }
  await verified;
  return result;
}

/** Counts a blob's bytes as they pass and reports progress; `done` only after the last byte. */
class ProgressCounter extends Transform {
  readonly #desc: Descriptor;
  readonly #report: ((event: ProgressEvent) => void) | undefined;
  #bytes = 0;
  #reported = 0;

  constructor(desc: Descriptor, report: ((event: ProgressEvent) => void) | undefined) {
    super();
    this.#desc = desc;
    this.#report = report;
    this.#emit('start');
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.#bytes += chunk.length;
    if (this.#bytes - this.#reported >= PROGRESS_STEP) {
      this.#reported = this.#bytes;
      this.#emit('progress');
    }
    done(null, chunk);
  }

  override _flush(done: TransformCallback): void {
    this.#emit('done');
    done();
  }

  #emit(state: ProgressEvent['state']): void {
    this.#report?.({ mediaType: this.#desc.mediaType, digest: this.#desc.digest, bytes: this.#bytes, total: this.#desc.size, state });
  }
}
