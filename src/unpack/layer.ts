import { Transform, type TransformCallback, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { decompressor } from '../compress/codec.js';
import type { ProgressEvent, ReadOnlyTarget } from '../content/target.js';
import { isCkptError } from '../errors.js';
import type { Descriptor } from '../oci/schemas.js';
import type { TarEntry } from '../tar/extract.js';
import { readTar } from '../tar/read.js';
import type { LayerPlan } from './plan.js';
import { ZstdLayerThread } from './zstd-thread.js';

/** Progress is reported at most once per this many bytes (and at start and end). */
const PROGRESS_STEP = 1 << 20;

export interface LayerReadOptions {
  signal?: AbortSignal | undefined;
  onProgress?: ((event: ProgressEvent) => void) | undefined;
}

/**
 * Fetches a layer and hands its entries to `use`, with the name messages about them carry
 * (`host/repo@digest`); resolves with what `use` returns once the blob has also been read whole
 * and verified against its digest, so no caller ever treats unverified content as complete.
 */
export async function readLayer<T>(
  target: ReadOnlyTarget,
  layer: LayerPlan,
  options: LayerReadOptions,
  use: (entries: AsyncIterable<TarEntry>, subject: string) => Promise<T>,
): Promise<T> {
  const { signal } = options;
  const subject = `${target.name}@${layer.desc.digest}`;
  // A worker starts while the request goes out.
  const decoder = layer.threaded ? onThread(layer, subject, signal) : onMainThread(layer, subject);
  try {
    // A worker hashes what it decodes and checks the digest before its entries end.
    const blob = await target.fetch(layer.desc, { signal, digestCheckedByCaller: layer.threaded });
    const counter = new ProgressCounter(layer.desc, options.onProgress);
    // The blob is piped into the decoder by hand, not by pipeline(): after a failure to decode,
    // the rest of the blob is still read (below) to learn whether its digest was wrong.
    const verified = pipeline(blob, counter, signal ? { signal } : {});
    verified.catch(() => undefined);
    counter.on('error', (err) => decoder.fail(err));
    counter.pipe(decoder.input);
    let result: T;
    try {
      result = await use(decoder.entries, subject);
    } catch (err) {
      if (isCkptError(err, 'CORRUPT_ARCHIVE')) {
        // A flipped byte usually breaks decompression before the digest can be checked at the end;
        // the digest mismatch is the truer report, so the blob is read to its end to find out.
        counter.unpipe(decoder.input);
        counter.resume();
        await verified;
      } else {
        blob.destroy();
      }
      throw err;
    }
    // The tar may end before the blob does (zero blocks, bytes after the compressed stream): what
    // is left is read for the digest, not left unread in a pipe to a decoder that has stopped.
    counter.unpipe(decoder.input);
    counter.resume();
    await verified;
    return result;
  } finally {
    await decoder.close();
  }
}

/** Where a layer's compressed bytes go and its entries come from. */
interface LayerDecoder {
  input: Writable;
  entries: AsyncIterable<TarEntry>;
  /** Fails the entries with the blob's own failure. */
  fail(err: Error): void;
  close(): Promise<void>;
}

function onMainThread(layer: LayerPlan, subject: string): LayerDecoder {
  const tar = decompressor(layer.compression);
  // readTar() reports the stream's failure; a failure before it starts reading (an abort) has no one else to tell.
  tar.on('error', () => undefined);
  return { input: tar, entries: readTar(tar, subject), fail: (err) => tar.destroy(err), close: async () => undefined };
}

function onThread(layer: LayerPlan, subject: string, signal: AbortSignal | undefined): LayerDecoder {
  const thread = new ZstdLayerThread(layer.desc.digest, subject, signal);
  return { input: thread.input, entries: thread.entries(), fail: (err) => thread.fail(err), close: () => thread.close() };
}

/** Counts a blob's bytes as they pass and reports progress; `done` only after the last byte. */
class ProgressCounter extends Transform {
  readonly #desc: Descriptor;
  readonly #report: ((event: ProgressEvent) => void) | undefined;
  #bytes = 0;
  #reported = 0;

  constructor(desc: Descriptor, report: ((event: ProgressEvent) => void) | undefined) {
    // Room for whole network chunks, or every one of them would stop and restart the flow.
    super({ highWaterMark: 1 << 20 });
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
