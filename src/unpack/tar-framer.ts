import { extract, type Header } from 'tar-stream';
import { CkptError } from '../errors.js';
import { corruptArchive } from '../tar/read.js';
import { tarPadding } from '../tar/ustar.js';

/**
 * Cuts an uncompressed tar stream, handed over in pieces, into each entry's header blocks and its
 * content, in a plain synchronous loop over the caller's buffer. Content comes out as views of
 * that buffer, and only headers are copied, so the caller may refill the buffer as soon as
 * `next()` has nothing more: no allocation per chunk. Headers are framed, not decoded: the caller
 * decodes them with tar-stream, as every other reader does, and says how many content bytes
 * follow. The framing is tar-stream's: blocks that are zero but for the checksum are skipped, long
 * names and PAX records (`L`, `K`, `x`, `g`) go with the entry after them, and the newest global
 * PAX header goes with every later entry (tar-stream merges it into their PAX records).
 */

const BLOCK = 512;
/** tar-stream's limit for one long name or PAX header. */
const MAX_EXTENDED = 4 << 20;
/** Extended headers before one entry, together: tar-stream keeps only the last of each, we keep all. */
const MAX_EXTENDED_TOTAL = 4 * MAX_EXTENDED;
const EXTENDED_TYPES = new Set([0x4c, 0x4b, 0x78, 0x67]); // 'L', 'K', 'x', 'g'
const PAX_GLOBAL = 0x67;

export type Frame =
  /** An entry's header blocks, extended headers first; `content()` must be called before `next()`. */
  | { kind: 'header'; header: Buffer }
  /** The next piece of the current entry's content, a view of the bytes given to `feed()`. */
  | { kind: 'content'; bytes: Uint8Array; last: boolean };

type State =
  | { at: 'block' }
  | { at: 'extended'; left: number }
  | { at: 'decision' }
  | { at: 'content'; left: number; padding: number }
  | { at: 'padding'; left: number };

export class TarFramer {
  readonly #subject: string;
  #input: Uint8Array = new Uint8Array(0);
  #state: State = { at: 'block' };
  readonly #block = Buffer.alloc(BLOCK);
  #filled = 0;
  /** The extended header being read: its block and content so far. */
  #extended: Buffer[] = [];
  /** Whole extended headers read for the next entry, in archive order. */
  #pending: Buffer[] = [];
  #pendingSize = 0;
  /** The newest global PAX header, whole. */
  #global: Buffer | undefined;

  constructor(subject: string) {
    this.#subject = subject;
  }

  /** Hands over the next bytes of the tar, once `next()` has taken all of the last ones. */
  feed(bytes: Uint8Array): void {
    if (this.#input.length > 0) throw new Error('TarFramer: fed before the last bytes were taken');
    this.#input = bytes;
  }

  /** The next header or piece of content in what was fed, or undefined when all of it is taken. */
  next(): Frame | undefined {
    for (;;) {
      const state = this.#state;
      if (state.at === 'decision') throw new Error('TarFramer: content() was not called after a header');
      if (this.#input.length === 0) return undefined;
      if (state.at === 'block') {
        const header = this.#takeBlock();
        if (header) return { kind: 'header', header };
      } else if (state.at === 'extended') {
        const bytes = this.#take(state.left);
        this.#extended.push(Buffer.from(bytes));
        state.left -= bytes.length;
        if (state.left === 0) this.#endExtended();
      } else if (state.at === 'content') {
        const bytes = this.#take(state.left);
        state.left -= bytes.length;
        if (state.left === 0) this.#state = state.padding > 0 ? { at: 'padding', left: state.padding } : { at: 'block' };
        return { kind: 'content', bytes, last: state.left === 0 };
      } else {
        state.left -= this.#take(state.left).length;
        if (state.left === 0) this.#state = { at: 'block' };
      }
    }
  }

  /** How many content bytes follow the header just returned, as tar-stream reads it. */
  content(size: number): void {
    if (this.#state.at !== 'decision') throw new Error('TarFramer: content() without a header');
    this.#state = size > 0 ? { at: 'content', left: size, padding: tarPadding(size) } : { at: 'block' };
  }

  /** Fails unless the stream ended where tar-stream accepts an end: between entries. */
  end(): void {
    // Extended headers with no entry after them are dropped, as tar-stream drops them.
    if (this.#state.at !== 'block' || this.#filled > 0) throw corrupt(this.#subject, 'Unexpected end of data');
  }

  #take(max: number): Uint8Array {
    const bytes = this.#input.subarray(0, max);
    this.#input = this.#input.subarray(bytes.length);
    return bytes;
  }

  /** Fills the header block; at its end returns an entry's header, or starts an extended one. */
  #takeBlock(): Buffer | undefined {
    const bytes = this.#take(BLOCK - this.#filled);
    this.#block.set(bytes, this.#filled);
    this.#filled += bytes.length;
    if (this.#filled < BLOCK) return undefined;
    this.#filled = 0;
    if (isNullBlock(this.#block)) return undefined;
    const block = Buffer.from(this.#block);
    const size = EXTENDED_TYPES.has(block[156] ?? 0) ? octal(block) : undefined;
    // A regular header, or an extended one whose size is unreadable, which decoding reports.
    if (size === undefined) {
      const header = Buffer.concat([...(this.#global ? [this.#global] : []), ...this.#pending, block]);
      this.#global = this.#pending.findLast((part) => part[156] === PAX_GLOBAL) ?? this.#global;
      this.#pending = [];
      this.#pendingSize = 0;
      this.#state = { at: 'decision' };
      return header;
    }
    this.#pendingSize += BLOCK + size;
    if (size > MAX_EXTENDED || this.#pendingSize > MAX_EXTENDED_TOTAL) throw corrupt(this.#subject, 'Header exceeds max size');
    this.#extended = [block];
    this.#state = { at: 'extended', left: size + tarPadding(size) };
    if (size === 0) this.#endExtended();
    return undefined;
  }

  #endExtended(): void {
    this.#pending.push(Buffer.concat(this.#extended));
    this.#extended = [];
    this.#state = { at: 'block' };
  }
}

/**
 * An entry's header blocks, as `next()` returns them, decoded by tar-stream: it hands out an entry
 * as soon as its header is read, before any content.
 */
export function decodeHeader(blocks: Buffer, subject: string): Promise<Header> {
  return new Promise((resolve, reject) => {
    const parser = extract();
    parser.on('entry', (header: Header, stream) => {
      stream.on('error', () => undefined); // destroyed unread with the parser
      resolve(header);
      parser.destroy();
    });
    parser.on('error', (err) => reject(corruptArchive(err, subject)));
    parser.on('close', () => reject(corrupt(subject, 'a header without an entry')));
    parser.end(blocks);
  });
}

/** tar-stream's end-of-archive test: every byte zero but the checksum field's. */
function isNullBlock(block: Buffer): boolean {
  for (let i = 0; i < BLOCK; i++) if (block[i] !== 0 && (i < 148 || i >= 156)) return false;
  return true;
}

/** The size field as tar-stream reads it: octal digits, or base-256 after 0x80; undefined if unreadable. */
function octal(block: Buffer): number | undefined {
  const field = block.subarray(124, 136);
  if (field[0] === 0x80) {
    let value = 0;
    for (let i = 1; i < field.length; i++) value = value * 256 + (field[i] ?? 0);
    return Number.isSafeInteger(value) ? value : undefined;
  }
  if ((field[0] ?? 0) & 0x80) return undefined;
  let start = 0;
  while (start < field.length && field[start] === 0x20) start++;
  let end = field.indexOf(0x20, start);
  if (end === -1) end = field.length;
  while (start < end && field[start] === 0) start++;
  if (start === end) return 0;
  const value = parseInt(field.toString('latin1', start, end), 8);
  return Number.isNaN(value) ? undefined : value;
}

function corrupt(subject: string, why: string): CkptError {
  return new CkptError('CORRUPT_ARCHIVE', `truncated or corrupt archive (${why})`, { subject });
}
