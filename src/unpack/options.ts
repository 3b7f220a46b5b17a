import { availableParallelism } from 'node:os';
import type { TransferOptions } from '../content/target.js';
import { assertConcurrency, DEFAULT_CONCURRENCY } from '../content/limit.js';
import type { Manifest } from '../oci/schemas.js';

export interface UnpackOptions extends TransferOptions {
  /** Layers fetched at once (default 4). */
  concurrency?: number;
  /** The manifest of `manifestDesc`, already read and verified by the caller: it is not fetched again. */
  manifest?: Manifest;
  /**
   * The image's name, where it must be a checkpoint: one whose layers hold no CRIU inventory.img
   * fails with NOT_CHECKPOINT and leaves nothing, instead of unpacking as a plain tree.
   */
  checkpointImage?: string;
}

export interface NormalisedUnpackOptions {
  concurrency: number;
  signal: AbortSignal | undefined;
  onProgress: TransferOptions['onProgress'];
  manifest: Manifest | undefined;
  checkpointImage: string | undefined;
}

/** How many spare zstd workers a pull of `concurrency` layers at once can use: no more than the cores. */
export function sparesForPull(concurrency = DEFAULT_CONCURRENCY): number {
  return Math.min(availableParallelism(), concurrency);
}

/** Fills the defaults and checks every option once, before anything is fetched or written. */
export function normaliseUnpackOptions(options: UnpackOptions): NormalisedUnpackOptions {
  const concurrency = options.concurrency ?? DEFAULT_CONCURRENCY;
  assertConcurrency(concurrency);
  return { concurrency, signal: options.signal, onProgress: options.onProgress, manifest: options.manifest, checkpointImage: options.checkpointImage };
}
