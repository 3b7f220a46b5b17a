import { availableParallelism } from 'node:os';
import type { Compression } from '../compress/codec.js';
import type { ThreadError } from '../threads/errors.js';

/** What a page-layer worker thread (page-worker.ts) and the main thread (page-layer.ts) say to each other. */

/** A file of a page layer: its tar header, and where its content lies to be read by offset. */
export interface PageEntry {
  header: Uint8Array;
  path: string;
  offset: number;
  size: number;
}

/** What a page worker is asked to do, in a `job` message (one per layer it writes). */
export interface PageLayerJob {
  /**
   * The files to read by offset; without them the layer is fed: the main thread sends each file
   * (`entry`, then its content) as it reads a source that cannot be read by offset.
   */
  entries?: PageEntry[];
  /** Layers are zstd-compressed or not at all here; gzip streams through the main thread. */
  compression: Exclude<Compression, 'gzip'>;
  level: number;
  /** zstd threads of the worker's own. */
  threads: number;
}

/** Page layers written at once, each on a worker: one per core, within what a registry takes in parallel. */
const MAX_PAGE_WORKERS = 4;

export function pageWorkerSlots(): number {
  return Math.max(1, Math.min(availableParallelism(), MAX_PAGE_WORKERS));
}

/** Bytes per block a page worker hands over, and per block of content it is fed. */
export const BLOCK_SIZE = 1 << 20;

/** Messages to a page worker. */
export type ToPageWorker =
  /** The layer to write; a worker started ahead of need waits for it. */
  | { type: 'job'; job: PageLayerJob }
  /** The main thread took a block: one more may be sent. */
  | { type: 'credit' }
  /** A block's memory, copied and sent back to be filled again. */
  | { type: 'spare'; data: ArrayBuffer }
  /** Fed layers: the next file, whose `size` bytes follow in `content` messages. */
  | { type: 'entry'; header: Uint8Array; size: number }
  /** Fed layers: file content, in a block the worker hands back (`free`) once read. */
  | { type: 'content'; data: ArrayBuffer; length: number }
  /** Fed layers: no more files. */
  | { type: 'end' };

/** Messages from a page worker; each `chunk` is answered with a `credit` once the main thread has room. */
export type FromPageWorker =
  | { type: 'chunk'; data: ArrayBuffer; length: number }
  | { type: 'free'; data: ArrayBuffer }
  | { type: 'done'; digest: string; size: number; diffId: string }
  | { type: 'error'; error: ThreadError };
