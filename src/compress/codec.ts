import { availableParallelism } from 'node:os';
import { PassThrough, type Transform } from 'node:stream';
import { createGunzip, createGzip } from 'node:zlib';
import { CompressStream } from 'zstd-napi';
import { CkptError } from '../errors.js';
import { ZstdDecompress } from './zstd-decompress.js';

export type Compression = 'none' | 'gzip' | 'zstd';
export const COMPRESSIONS: readonly Compression[] = ['zstd', 'gzip', 'none'];

/**
 * Default levels. zstd 1, not zstd's own 3: on memory pages it compresses within a fraction of a
 * percent of level 3 (bench and fixtures) for about half the CPU, and a migration waits on it.
 */
export const DEFAULT_LEVEL: Record<Compression, number> = { zstd: 1, gzip: 6, none: 0 };

export const LEVEL_RANGE: Record<Compression, [number, number]> = { zstd: [1, 19], gzip: [1, 9], none: [0, 0] };

const GZIP_MAGIC = [0x1f, 0x8b];
const ZSTD_MAGIC = [0x28, 0xb5, 0x2f, 0xfd];

/** What the first bytes of a file say about its compression (a tar is `none`). */
export function detectCompression(head: Buffer): Compression | 'unknown' {
  const starts = (magic: number[]) => magic.every((b, i) => head[i] === b);
  if (starts(GZIP_MAGIC)) return 'gzip';
  if (starts(ZSTD_MAGIC)) return 'zstd';
  // A POSIX or GNU tar header carries "ustar" at offset 257.
  if (head.length >= 262 && head.subarray(257, 262).toString('latin1') === 'ustar') return 'none';
  return 'unknown';
}

export function decompressor(kind: Compression): Transform {
  switch (kind) {
    case 'gzip':
      return createGunzip();
    case 'zstd':
      return new ZstdDecompress();
    case 'none':
      return new PassThrough();
  }
}

/** The level to compress at: the default, or the one asked for once checked. */
export function compressionLevel(kind: Compression, level?: number): number {
  if (level === undefined) return DEFAULT_LEVEL[kind];
  if (kind === 'none') {
    if (level !== 0) throw new CkptError('USAGE', 'a compression level applies to zstd and gzip, not to uncompressed layers');
    return 0;
  }
  const [min, max] = LEVEL_RANGE[kind];
  if (!Number.isInteger(level) || level < min || level > max) {
    throw new CkptError('USAGE', `compression level for ${kind} must be an integer from ${min} to ${max}`);
  }
  return level;
}

/** zstd threads for a large layer on this machine. */
export function defaultThreads(): number {
  return Math.max(1, Math.min(availableParallelism(), 2));
}

/**
 * A compressing transform. With `threads` > 0, zstd compresses on worker threads of its own
 * (nbWorkers) beside the calling thread, at the price of their buffers; its multi-threaded output
 * does not depend on the thread count, so builds stay reproducible across machines. With 0, it
 * compresses on the calling thread: for small layers.
 */
export function compressor(kind: Compression, level?: number, threads = defaultThreads()): Transform {
  level = compressionLevel(kind, level);
  switch (kind) {
    case 'gzip':
      return createGzip({ level });
    case 'zstd':
      return new CompressStream({
        compressionLevel: level,
        nbWorkers: threads,
        // Small jobs keep each thread's buffers to a few MiB; the ratio barely changes.
        ...(threads > 0 ? { jobSize: 2 << 20 } : {}),
      });
    case 'none':
      return new PassThrough();
  }
}
