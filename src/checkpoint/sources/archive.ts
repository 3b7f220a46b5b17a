import { open, realpath, stat } from 'node:fs/promises';
import type { CheckpointSource, SourceEntry } from '../entry.js';
import { type Compression, decompressor, detectCompression } from '../../compress/codec.js';
import { CkptError, fromSystemError } from '../../errors.js';
import { fileStream } from '../../fs/file-stream.js';
import { readTar } from '../../tar/read.js';
import { readTarFile } from '../../tar/seek.js';

/** Reads the first bytes of a file to learn its compression from its magic number, not its name. */
export async function sniffCompression(path: string): Promise<Compression> {
  let handle;
  try {
    handle = await open(path);
    const head = Buffer.alloc(512);
    const { bytesRead } = await handle.read(head, 0, head.length, 0);
    const kind = detectCompression(head.subarray(0, bytesRead));
    if (kind === 'unknown') {
      throw new CkptError(
        bytesRead === 0 ? 'CORRUPT_ARCHIVE' : 'UNKNOWN_COMPRESSION',
        bytesRead === 0 ? 'empty file' : 'not a tar archive, nor gzip- or zstd-compressed',
        { subject: path },
      );
    }
    return kind;
  } catch (err) {
    throw fromSystemError(err, path);
  } finally {
    await handle?.close();
  }
}

/** Where a file is and which version of it this is: changes whenever the file is rewritten. */
async function fileIdentity(path: string): Promise<string> {
  const info = await stat(path, { bigint: true });
  return `${await realpath(path)} ${info.dev}:${info.ino} ${info.size} ${info.mtimeNs} ${info.ctimeNs}`;
}

/**
 * A checkpoint archive (`.tar`, `.tar.gz`, `.tar.zst`, whatever its name). A compressed one is read
 * as one stream; an uncompressed one by its headers alone, its files being regions of the archive.
 */
export class ArchiveSource implements CheckpointSource {
  readonly kind = 'archive';

  constructor(
    readonly name: string,
    readonly compression: Compression,
  ) {}

  static async open(path: string): Promise<ArchiveSource> {
    return new ArchiveSource(path, await sniffCompression(path));
  }

  async fingerprint(): Promise<string> {
    return fileIdentity(this.name);
  }

  async *entries(signal?: AbortSignal): AsyncGenerator<SourceEntry> {
    if (this.compression === 'none') {
      yield* readTarFile(this.name, signal);
      return;
    }
    const file = fileStream(this.name, signal);
    const bytes = file.pipe(decompressor(this.compression));
    file.on('error', (err) => bytes.destroy(err));
    yield* readTar(bytes, this.name);
  }
}
