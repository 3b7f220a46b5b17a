import { createReadStream } from 'node:fs';
import { PassThrough, type Readable } from 'node:stream';
import { fromSystemError } from '../errors.js';

/** A file's bytes as a stream whose errors are CkptErrors naming the file (unreadable, missing...). */
export function fileStream(path: string, signal?: AbortSignal): Readable {
  const out = new PassThrough({ highWaterMark: 1 << 20 });
  const file = createReadStream(path, { signal, highWaterMark: 1 << 20 });
  file.on('error', (err) => out.destroy(fromSystemError(err, path) as Error));
  return file.pipe(out);
}
