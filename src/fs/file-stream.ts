import { createReadStream } from 'node:fs';
import { Transform, type Readable } from 'node:stream';
import { CkptError, fromSystemError } from '../errors.js';

/** `length` bytes from byte `start` of a file. */
export interface ByteRange {
  start: number;
  length: number;
}

/**
 * A file's bytes as a stream whose errors are CkptErrors naming the file (unreadable, missing...).
 * With a range, exactly its bytes: a file that ends before the range's end fails the stream, as a
 * quietly short read would hand out content of the wrong size.
 */
export function fileStream(path: string, signal?: AbortSignal, range?: ByteRange): Readable {
  let missing = range?.length ?? 0;
  const out = new Transform({
    highWaterMark: 1 << 20,
    transform(chunk: Buffer, _encoding, done) {
      missing -= chunk.length;
      done(null, chunk);
    },
    flush(done) {
      if (!range || missing <= 0) return done();
      const why = `file ends ${missing} bytes before byte ${range.start + range.length}: it changed while being read`;
      done(new CkptError('READ_FAILED', why, { subject: path }));
    },
  });
  // createReadStream cannot read nothing (its `end` is inclusive).
  if (range?.length === 0) return out.end();
  const file = createReadStream(path, {
    signal,
    highWaterMark: 1 << 20,
    start: range?.start,
    end: range ? range.start + range.length - 1 : undefined,
  });
  file.on('error', (err) => out.destroy(fromSystemError(err, path) as Error));
  return file.pipe(out);
}
