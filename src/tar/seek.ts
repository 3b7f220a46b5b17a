import { type FileHandle, open } from 'node:fs/promises';
import type { Header } from 'tar-stream';
import type { SourceEntry } from '../checkpoint/entry.js';
import { CkptError, fromSystemError } from '../errors.js';
import { fileStream } from '../fs/file-stream.js';
import { type PaxFields, paxFields } from './pax.js';
import { treeEntry } from './read.js';
import { headerChecksum } from './ustar.js';

/**
 * Reads an uncompressed tar file by its headers alone, seeking over the content: a checkpoint's
 * few hundred headers cost a few small reads, whatever its gigabytes of memory pages, and each
 * file's content can then be read by offset, later and in parallel. It takes what tar-stream takes
 * (ustar, GNU and PAX headers) and gives the same headers, so an archive reads the same whether it
 * is compressed or not.
 */

const BLOCK = 512;
const ZERO_BLOCK = Buffer.alloc(BLOCK);
/** Bytes read at once: the headers and small files between two large files come in one read. */
const WINDOW = 64 << 10;
/** A long name or PAX header beyond this is garbage, not a header (tar-stream's limit too). */
const MAX_EXTENDED = 4 << 20;

/** A tar header as treeEntry() takes it, long names and PAX records applied. */
export type TarHeader = Pick<
  Header,
  'name' | 'type' | 'size' | 'mode' | 'uid' | 'gid' | 'mtime' | 'uname' | 'gname' | 'devmajor' | 'devminor'
> & { linkname?: string };

/** A header and where its entry's `header.size` bytes of content start in the file. */
export interface IndexedEntry {
  header: TarHeader;
  offset: number;
}

const TYPES = new Map<number, Header['type']>([
  [0, 'file'],
  [0x30, 'file'],
  [0x31, 'link'],
  [0x32, 'symlink'],
  [0x33, 'character-device'],
  [0x34, 'block-device'],
  [0x35, 'directory'],
  [0x36, 'fifo'],
  [0x37, 'contiguous-file'],
]);
const PAX = 0x78; // 'x', applies to the next entry
const PAX_GLOBAL = 0x67; // 'g'
const GNU_LONG_NAME = 0x4c; // 'L'
const GNU_LONG_LINK = 0x4b; // 'K'

/** What extended headers said about the next entry. */
interface Extended {
  /** Where the first of them is, for an error when no entry follows. */
  at: number;
  longName?: string;
  longLink?: string;
  pax?: PaxFields;
}

function corrupt(subject: string, why: string): CkptError {
  return new CkptError('CORRUPT_ARCHIVE', `truncated or corrupt archive (${why})`, { subject });
}

/** Bytes past the content up to the next block. */
const padded = (size: number): number => Math.ceil(size / BLOCK) * BLOCK;

/** Reads around a position, keeping one window of the file so that neighbouring headers cost no read. */
class FileWindow {
  #bytes = Buffer.alloc(0);
  #start = 0;

  constructor(
    readonly handle: FileHandle,
    readonly size: number,
    readonly subject: string,
  ) {}

  /** `length` bytes at `position`, which the caller checked to lie inside the file. */
  async read(position: number, length: number): Promise<Buffer> {
    const offset = position - this.#start;
    if (offset >= 0 && offset + length <= this.#bytes.length) return this.#bytes.subarray(offset, offset + length);
    // A fresh buffer each time: what was handed out earlier stays valid.
    const want = Math.min(Math.max(length, WINDOW), this.size - position);
    const bytes = Buffer.allocUnsafe(want);
    let got = 0;
    while (got < want) {
      const { bytesRead } = await this.handle.read(bytes, got, want - got, position + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    if (got < length) throw corrupt(this.subject, `the file shrank to ${position + got} bytes while being read`);
    this.#bytes = bytes.subarray(0, got);
    this.#start = position;
    return this.#bytes.subarray(0, length);
  }
}

/** A NUL-terminated string field. */
function text(bytes: Buffer, start: number, length: number): string {
  const end = bytes.subarray(start, start + length).indexOf(0);
  return bytes.toString('utf8', start, end === -1 ? start + length : start + end);
}

/** A numeric field: octal digits ended by spaces or NULs, or GNU base-256 (two's complement) for large values. */
function numeric(bytes: Buffer, start: number, length: number): number | undefined {
  const field = bytes.subarray(start, start + length);
  if ((field[0] ?? 0) & 0x80) {
    const invert = (field[0] ?? 0) & 0x40 ? 0xff : 0;
    let value = 0n;
    // The first byte's top bit only marks the encoding.
    field.forEach((byte, i) => (value = (value << 8n) | BigInt((byte ^ invert) & (i === 0 ? 0x7f : 0xff))));
    const signed = invert ? -value - 1n : value;
    const number = Number(signed);
    return Number.isSafeInteger(number) ? number : undefined;
  }
  const digits = /^[ \0]*([0-7]*)[ \0]*$/.exec(field.toString('latin1'))?.[1];
  if (digits === undefined) return undefined;
  const number = digits === '' ? 0 : parseInt(digits, 8);
  return Number.isSafeInteger(number) ? number : undefined;
}

/** Decodes one header block; `type` is undefined for an extended header or an unknown typeflag. */
function decodeHeader(
  block: Buffer,
  at: number,
  subject: string,
): { flag: number; type: Header['type'] | undefined; header: Omit<TarHeader, 'type'> } {
  if (numeric(block, 148, 8) !== headerChecksum(block)) throw corrupt(subject, `bad header checksum at byte ${at}`);
  const magic = block.toString('latin1', 257, 265);
  const ustar = magic.startsWith('ustar\0');
  if (!ustar && magic !== 'ustar  \0') throw corrupt(subject, `unknown header format at byte ${at}`);
  const field = (name: string, start: number, length: number, min = 0): number => {
    const value = numeric(block, start, length);
    if (value === undefined || value < min) throw corrupt(subject, `invalid ${name} in the header at byte ${at}`);
    return value;
  };
  const flag = block[156] ?? 0;
  let name = text(block, 0, 100);
  // GNU headers hold other fields where ustar has the prefix.
  if (ustar && block[345] !== 0) name = `${text(block, 345, 155)}/${name}`;
  // A file named with a trailing slash stays a file (old tars' directories), as tar-stream reads it.
  const type = TYPES.get(flag);
  const linkname = text(block, 157, 100);
  return {
    flag,
    type,
    header: {
      name,
      size: field('size', 124, 12),
      mode: field('mode', 100, 8),
      uid: field('uid', 108, 8),
      gid: field('gid', 116, 8),
      mtime: new Date(field('mtime', 136, 12, -Infinity) * 1000),
      linkname: linkname === '' ? undefined : linkname,
      uname: text(block, 265, 32),
      gname: text(block, 297, 32),
      devmajor: field('devmajor', 329, 8),
      devminor: field('devminor', 337, 8),
    },
  };
}

/** PAX records (`LENGTH KEY=VALUE\n`, LENGTH counting the whole record). */
function paxRecords(bytes: Buffer, at: number, subject: string): Map<string, string> {
  const records = new Map<string, string>();
  for (let i = 0; i < bytes.length && bytes[i] !== 0; ) {
    const space = bytes.indexOf(0x20, i);
    const size = space > i && space - i <= 12 ? Number(bytes.toString('latin1', i, space)) : NaN;
    const end = i + size;
    const equals = bytes.indexOf(0x3d, space);
    if (!Number.isInteger(size) || end > bytes.length || bytes[end - 1] !== 0x0a || equals <= space + 1 || equals >= end) {
      throw corrupt(subject, `malformed PAX record in the header at byte ${at}`);
    }
    records.set(bytes.toString('utf8', space + 1, equals), bytes.toString('utf8', equals + 1, end - 1));
    i = end;
  }
  return records;
}

/**
 * Every entry's header of an uncompressed tar file with its content's offset, in archive order,
 * reading headers only. Long names and PAX records are applied to their entry; the newest global
 * PAX header goes under an entry's own PAX records, as tar-stream does. Ends at two zero blocks or
 * at the end of the file after a whole entry; a file that ends inside a header or an entry's
 * content, or holds a broken header, fails with CORRUPT_ARCHIVE, and an entry of a type tar does
 * not define with UNSAFE_PATH (its content's layout is unknown).
 */
export async function* indexTar(path: string, signal?: AbortSignal): AsyncGenerator<IndexedEntry> {
  let handle: FileHandle | undefined;
  try {
    handle = await open(path);
    yield* headers(new FileWindow(handle, (await handle.stat()).size, path), signal);
  } catch (err) {
    throw fromSystemError(err, path);
  } finally {
    await handle?.close();
  }
}

async function* headers(file: FileWindow, signal: AbortSignal | undefined): AsyncGenerator<IndexedEntry> {
  const subject = file.subject;
  let extended: Extended | undefined;
  /** The newest global PAX records: as tar-stream, merged under the next entry's own PAX records. */
  let global: Map<string, string> | undefined;
  for (let position = 0, zeros = 0; position < file.size; ) {
    if (signal?.aborted) throw new CkptError('ABORTED', 'operation aborted', { subject, cause: signal.reason });
    if (position + BLOCK > file.size) throw corrupt(subject, `the file ends inside the header at byte ${position}`);
    const block = await file.read(position, BLOCK);
    if (block.equals(ZERO_BLOCK)) {
      position += BLOCK;
      // Two zero blocks end the archive; a lone one is skipped, as tar does.
      if (++zeros === 2) break;
      continue;
    }
    zeros = 0;
    const at = position;
    const { flag, type, header } = decodeHeader(block, at, subject);
    const start = at + BLOCK;
    const bounded = (length: number): number => {
      if (start + padded(length) > file.size) {
        throw corrupt(subject, `the file ends inside the entry ${JSON.stringify(header.name)} at byte ${at}`);
      }
      return start + padded(length);
    };
    if (flag === PAX || flag === PAX_GLOBAL || flag === GNU_LONG_NAME || flag === GNU_LONG_LINK) {
      if (header.size > MAX_EXTENDED) throw corrupt(subject, `an extended header of ${header.size} bytes at byte ${at}`);
      position = bounded(header.size);
      const content = await file.read(start, header.size);
      if (flag === PAX_GLOBAL) {
        global = paxRecords(content, at, subject);
        continue;
      }
      extended ??= { at };
      if (flag === PAX) {
        const records = new Map([...(global ?? []), ...paxRecords(content, at, subject)]);
        extended.pax = paxFields(records, (key, value) => corrupt(subject, `invalid PAX ${key} ${JSON.stringify(value)} in the header at byte ${at}`), subject);
      } else if (flag === GNU_LONG_NAME) extended.longName = text(content, 0, content.length);
      else extended.longLink = text(content, 0, content.length);
      continue;
    }
    // As tar-stream: GNU long names first, then PAX over them.
    if (extended?.longName) header.name = extended.longName;
    if (extended?.longLink) header.linkname = extended.longLink;
    Object.assign(header, extended?.pax);
    extended = undefined;
    if (type === undefined) {
      const typeflag = String.fromCharCode(flag);
      const what = typeflag === 'S' ? ' (a sparse file: archive without tar --sparse)' : '';
      const why = `has the tar type ${JSON.stringify(typeflag)}${what}, which a checkpoint never holds`;
      throw new CkptError('UNSAFE_PATH', `entry ${JSON.stringify(header.name)} ${why}`, { subject });
    }
    // tar-stream reads no content after a directory's header, whatever its size says.
    position = bounded(type === 'directory' ? 0 : header.size);
    yield { header: { ...header, type }, offset: start };
  }
  if (extended) throw corrupt(subject, `the extended header at byte ${extended.at} is followed by no entry`);
}

/**
 * Reads an uncompressed tar file entry by entry, as readTar() reads a stream, but by its headers
 * alone: each file's content is a region of the archive, opened on demand or read elsewhere.
 */
export async function* readTarFile(path: string, signal?: AbortSignal): AsyncGenerator<SourceEntry> {
  for await (const { header, offset } of indexTar(path, signal)) {
    const entry = treeEntry(header, path);
    if (!entry) continue;
    if (entry.type !== 'file') {
      yield { entry };
      continue;
    }
    const range = { start: offset, length: entry.size };
    yield { entry, open: () => fileStream(path, signal, range), region: { path, offset } };
  }
}
