import { PassThrough, type Readable } from 'node:stream';
import { extract, type Header } from 'tar-stream';
import type { SourceEntry, TreeEntry } from '../checkpoint/entry.js';
import { CkptError } from '../errors.js';
import { assertSafeLink, safeEntryPath } from './safety.js';

const TYPES: Partial<Record<NonNullable<Header['type']>, TreeEntry['type']>> = {
  file: 'file',
  'contiguous-file': 'file',
  directory: 'directory',
  symlink: 'symlink',
  link: 'hardlink',
};

/** Converts a tar header into a checked tree entry; `undefined` for the tree root itself. */
export function treeEntry(header: Partial<Header> & Pick<Header, 'name'>, subject: string): TreeEntry | undefined {
  const path = safeEntryPath(header.name, subject);
  const type = header.type ? TYPES[header.type] : 'file';
  if (!type) {
    throw new CkptError('UNSAFE_PATH', `entry ${JSON.stringify(header.name)} is a ${header.type}, which a checkpoint never holds`, {
      subject,
    });
  }
  if (path === '') return undefined;
  if ((type === 'symlink' || type === 'hardlink') && header.linkname != null) {
    assertSafeLink(path, header.linkname, type, subject);
  }
  return {
    path,
    type,
    mode: (header.mode ?? (type === 'directory' ? 0o755 : 0o644)) & 0o7777,
    uid: header.uid ?? 0,
    gid: header.gid ?? 0,
    uname: header.uname || undefined,
    gname: header.gname || undefined,
    mtime: header.mtime ?? new Date(0),
    size: type === 'file' ? (header.size ?? 0) : 0,
    linkname: header.linkname ?? undefined,
  };
}

/** Turns what tar-stream says about a broken archive into one line a user understands. */
export function corruptArchive(err: unknown, subject: string): unknown {
  if (err instanceof CkptError || (err as { name?: string }).name === 'AbortError') return err;
  const message = err instanceof Error ? err.message : String(err);
  return new CkptError('CORRUPT_ARCHIVE', `truncated or corrupt archive (${message})`, { subject, cause: err });
}

/**
 * Reads a tar stream entry by entry, checking every path. Each entry's content must be consumed
 * (or is skipped) before the next one is read: the archive is never held in memory.
 */
export async function* readTar(input: Readable, subject: string): AsyncGenerator<SourceEntry> {
  const parser = extract();
  input.on('error', (err) => parser.destroy(err));
  input.pipe(parser);
  try {
    for await (const stream of parser) {
      const entry = treeEntry(stream.header, subject);
      if (!entry) {
        stream.resume();
        continue;
      }
      let opened = false;
      let failure: unknown;
      // Settles once the entry's bytes are read (or it failed), so the parser can move on.
      const finished = new Promise<void>((done) => {
        stream.once('end', done).once('close', done);
        stream.on('error', (err: Error) => {
          failure ??= corruptArchive(err, subject);
          done();
        });
      });
      yield {
        entry,
        open:
          entry.type === 'file'
            ? () => {
                if (opened) throw new Error(`content of ${entry.path} was already read`);
                opened = true;
                // tar-stream's entries are streamx streams; callers get a plain Node.js stream
                // whose errors say which archive is broken.
                const out = new PassThrough({ highWaterMark: 1 << 20 });
                stream.on('error', (err: Error) => out.destroy(corruptArchive(err, subject) as Error));
                return stream.pipe(out);
              }
            : undefined,
      };
      if (!opened) stream.resume();
      await finished;
      if (failure) throw failure;
    }
  } catch (err) {
    throw corruptArchive(err, subject);
  } finally {
    input.unpipe(parser);
    parser.destroy();
    input.destroy();
  }
}
