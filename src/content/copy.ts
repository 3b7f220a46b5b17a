import { setMaxListeners } from 'node:events';
import { Readable } from 'node:stream';
import type { Descriptor } from '../oci/schemas.js';
import { fetchSmall } from './fetch-json.js';
import { assertReadable, hasSuccessors, successors } from './graph.js';
import { DEFAULT_CONCURRENCY, limiter } from './limit.js';
import type { ReadOnlyTarget, Target, TransferOptions } from './target.js';

export interface CopyOptions extends TransferOptions {
  /** Blobs moved at once (default 4). */
  concurrency?: number;
  /** The root's bytes, already read and checked against its digest: not fetched again. */
  rootBytes?: Buffer;
  /**
   * The tag the root goes under. It is then stored with its tag, as the last step (a registry
   * takes both in one PUT), instead of being checked for, pushed by digest, then tagged.
   */
  tag?: string;
}

/**
 * Copies everything `root` points to from `src` to `dst`, children before parents: blobs the
 * destination has are skipped, blobs of another repository on the same registry are mounted, the
 * rest stream through verified. A manifest is pushed only after all it references, so nothing
 * ever points at what is missing; the root last, under `options.tag` where there is one. Every
 * manifest must be one ckpt reads into (OCI or Docker v2, `assertReadable`), or nothing is copied.
 */
export async function copyGraph(src: ReadOnlyTarget, dst: Target, root: Descriptor, options: CopyOptions = {}): Promise<void> {
  assertReadable(root, src.name);
  const run = limiter(options.concurrency ?? DEFAULT_CONCURRENCY);
  const started = new Map<string, Promise<void>>();
  // The first failure stops the other transfers, and the copy fails only once none is running: a
  // caller that cleans up after it (a new layout removed) must not race writes still in flight.
  const stop = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, stop.signal]) : stop.signal;
  setMaxListeners(256, signal);
  const transfer: TransferOptions = { signal, onProgress: options.onProgress };
  // A blob's progress is its destination's: the source reporting its reads too would count it twice.
  const read: TransferOptions = { signal };

  const skipped = (desc: Descriptor) =>
    options.onProgress?.({ mediaType: desc.mediaType, digest: desc.digest, bytes: desc.size, total: desc.size, state: 'skipped' });

  const copyBlob = async (desc: Descriptor) => {
    if (await dst.exists(desc, transfer)) {
      skipped(desc);
      return;
    }
    if (dst.mount && (await dst.mount(desc, src, transfer))) return;
    await dst.push(desc, await src.fetch(desc, read), { ...transfer, knownMissing: true });
  };

  const copyNode = (desc: Descriptor): Promise<void> => {
    let done = started.get(desc.digest);
    if (done) return done;
    const isRoot = desc.digest === root.digest;
    const tag = isRoot ? options.tag : undefined;
    done = (async () => {
      if (!hasSuccessors(desc)) {
        await run(() => copyBlob(desc));
        return;
      }
      const bytes = isRoot && options.rootBytes ? options.rootBytes : await fetchSmall(src, desc, read);
      await Promise.all(successors(desc, bytes, `${src.name}@${desc.digest}`).map(copyNode));
      if (tag !== undefined) await dst.tag(root, tag, { ...transfer, bytes });
      else if (await dst.exists(desc, transfer)) skipped(desc);
      else await dst.push(desc, Readable.from([bytes]), transfer);
    })();
    started.set(desc.digest, done);
    return done;
  };

  try {
    await copyNode(root);
  } catch (err) {
    stop.abort(err);
    // Nodes may still start others while they stop: wait until no new one appears.
    for (let settled = -1; settled !== started.size; ) {
      settled = started.size;
      await Promise.allSettled(started.values());
    }
    throw err;
  }
}
