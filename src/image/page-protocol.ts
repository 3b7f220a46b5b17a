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

/** What a page worker is asked to do (its `workerData`). */
export interface PageLayerJob {
  entries: PageEntry[];
  /** Layers are zstd-compressed or not at all here; gzip streams through the main thread. */
  compression: Exclude<Compression, 'gzip'>;
  level: number;
  /** zstd threads of the worker's own. */
  threads: number;
}

/** Bytes per block a page worker hands over. */
export const BLOCK_SIZE = 1 << 20;

/**
 * Messages from a page worker. The main thread answers each `chunk` with an empty message once it
 * has room, and may send a block's memory back (an ArrayBuffer) once the block was copied.
 */
export type FromPageWorker =
  | { type: 'chunk'; data: ArrayBuffer; length: number }
  | { type: 'done'; digest: string; size: number; diffId: string }
  | { type: 'error'; error: ThreadError };
