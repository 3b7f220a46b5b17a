import { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { extract, type Header } from 'tar-stream';
import type { SourceEntry, TreeEntry } from '../checkpoint/entry.js';
import { CkptError } from '../errors.js';
import { type PaxFields, paxFields } from './pax.js';
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
  // tar-stream gives null for a typeflag it does not know (GNU sparse, volume labels): refused.
  const type = header.type === null ? undefined : TYPES[header.type ?? 'file'];
  if (!type) {
    throw new CkptError('UNSAFE_PATH', `entry ${JSON.stringify(header.name)} is a ${header.type ?? 'tar entry of an unknown type'}, which a checkpoint never holds`, {
      subject,
    });
  }
  if (path === '') return undefined;
  if ((type === 'symlink' || type === 'hardlink') && header.linkname != null) {
    assertSafeLink(path, header.linkname, type, subject);
  }
  // tar-stream applies a PAX header's path, linkpath and size; the owner and the sub-second mtime
  // are applied here, as the index of an uncompressed archive does (seek.ts).
  const pax = paxOf(header, subject);
  return {
    path,
    type,
    mode: (header.mode ?? (type === 'directory' ? 0o755 : 0o644)) & 0o7777,
    uid: pax.uid ?? header.uid ?? 0,
    gid: pax.gid ?? header.gid ?? 0,
    uname: (pax.uname ?? header.uname) || undefined,
    gname: (pax.gname ?? header.gname) || undefined,
    mtime: pax.mtime ?? header.mtime ?? new Date(0),
    size: type === 'file' ? (header.size ?? 0) : 0,
    linkname: header.linkname ?? undefined,
  };
}

/** The PAX records tar-stream left on a header (`pax`), as header fields. */
function paxOf(header: Partial<Header>, subject: string): PaxFields {
  const records = header.pax;
  if (!records || typeof records !== 'object') return {};
  const strings = Object.entries(records).filter((record): record is [string, string] => typeof record[1] === 'string');
  return paxFields(new Map(strings), (key, value) => {
    const why = `invalid PAX ${key} ${JSON.stringify(value)} for ${JSON.stringify(header.name)}`;
    return new CkptError('CORRUPT_ARCHIVE', `truncated or corrupt archive (${why})`, { subject });
  }, subject);
}

/** Turns what tar-stream says about a broken archive into one line a user understands. */
export function corruptArchive(err: unknown, subject: string): unknown {
  if (err instanceof CkptError || (err as { name?: string }).name === 'AbortError') return err;
  const message = err instanceof Error ? err.message : String(err);
  return new CkptError('CORRUPT_ARCHIVE', `truncated or corrupt archive (${message})`, { subject, cause: err });
}

/** An entry's bytes, with a parser failure reported as the archive being broken. */
async function* entryContent(stream: AsyncIterable<unknown>, subject: string): AsyncGenerator<Buffer> {
  try {
    // tar-stream hands out Buffers; its types only say unknown.
    for await (const chunk of stream) yield chunk as Buffer;
  } catch (err) {
    throw corruptArchive(err, subject);
  }
}

/**
 * Reads a tar stream entry by entry, checking every path. Each entry's content is read (or
 * skipped) before the next one: the archive is never held in memory. Content comes from the
 * entry's own iterator, so a parser that fails at any moment fails the reader too, never leaving
 * it waiting.
 */
export async function* readTar(input: Readable, subject: string): AsyncGenerator<SourceEntry> {
  const parser = extract();
  input.on('error', (err) => parser.destroy(err));
  input.pipe(parser);
  try {
    for await (const stream of parser) {
      const entry = treeEntry(stream.header, subject);
      let reader: Readable | undefined;
      if (entry) {
        yield {
          entry,
          open:
            entry.type === 'file'
              ? () => {
                  if (reader) throw new Error(`content of ${entry.path} was already read`);
                  reader = Readable.from(entryContent(stream, subject), { objectMode: false, highWaterMark: 1 << 20 });
                  return reader;
                }
              : undefined,
        };
      }
      // The consumer reads the content to its end or fails the whole read; unread content is skipped.
      if (reader) await finished(reader).catch(() => undefined);
      else for await (const skipped of stream) void skipped;
    }
  } catch (err) {
    throw corruptArchive(err, subject);
  } finally {
    input.unpipe(parser);
    parser.destroy();
    input.destroy();
  }
}
