import type { TreeEntry } from '../checkpoint/entry.js';
import type { ThreadError } from '../threads/errors.js';

/** What a zstd layer worker (zstd-worker.ts) and the main thread (zstd-thread.ts) say to each other. */

/**
 * Where the content of the entry just announced goes: nowhere, into an open file at `position`,
 * or back to the main thread.
 */
export type ContentTarget = { kind: 'skip' } | { kind: 'file'; fd: number; position: number } | { kind: 'send' };

export type ToZstdWorker =
  /**
   * The first message: the layer to read. `digest` is the blob's: the worker hashes the compressed
   * bytes it is given and checks them against it at their end. `subject` names the layer in
   * messages (`host/repo@digest`).
   */
  | { type: 'layer'; digest: string; subject: string }
  /** Compressed bytes, in a buffer the worker hands back (`free`) once read. */
  | { type: 'input'; data: ArrayBuffer; length: number }
  /** The blob was read whole (its size checked; its digest is the worker's to check). */
  | { type: 'end' }
  /** The answer to an `entry`. */
  | { type: 'content'; to: ContentTarget }
  /** One more content chunk may be sent. */
  | { type: 'credit' };

export type FromZstdWorker =
  | { type: 'free'; data: ArrayBuffer }
  /** A header; undefined for the tree's root. The worker waits for a `content` answer. */
  | { type: 'entry'; entry: TreeEntry | undefined }
  | { type: 'chunk'; data: ArrayBuffer }
  /** The entry's content is written, sent or skipped. */
  | { type: 'done'; bytes: number }
  /** The tar ended where it may. */
  | { type: 'end' }
  | { type: 'error'; error: ThreadError };
