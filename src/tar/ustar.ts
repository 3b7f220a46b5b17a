import type { TreeEntry } from '../checkpoint/entry.js';

/** The 1024 zero bytes that end every tar ckpt writes. */
export const TAR_END = new Uint8Array(1024);

/** Zero bytes after `size` bytes of content to reach the next 512-byte block. */
export function tarPadding(size: number): number {
  return (512 - (size % 512)) % 512;
}

const OCTAL_FIELD = { mode: 6, id: 6, size: 11, mtime: 11 } as const;

function octal(value: number, digits: number): string | undefined {
  const text = value.toString(8);
  return text.length > digits ? undefined : `${text.padStart(digits, '0')} `;
}

/** Fits in a header field as plain ASCII (names outside it need PAX records). */
function ascii(text: string | undefined, max: number): boolean {
  return text === undefined || (text.length <= max && /^[\x20-\x7e]*$/.test(text));
}

/**
 * The 512-byte ustar header of a regular file, byte for byte as tar-stream writes it for the
 * same entry (layers are reproducible whichever way they are written). Undefined where tar-stream
 * would need more than one plain header: a path over 100 bytes, non-ASCII names, a size or time
 * past the octal fields.
 */
export function ustarFileHeader(entry: TreeEntry): Buffer | undefined {
  return entry.type === 'file' ? ustarHeader(entry, entry.path, entry.size, 0x30) : undefined;
}

/** The same for a directory: its name with a trailing slash (tarHeader), typeflag '5', no content. */
export function ustarDirectoryHeader(entry: TreeEntry): Buffer | undefined {
  return entry.type === 'directory' ? ustarHeader(entry, `${entry.path}/`, 0, 0x35) : undefined;
}

function ustarHeader(entry: TreeEntry, name: string, size: number, typeflag: number): Buffer | undefined {
  if (!ascii(name, 100) || !ascii(entry.uname, 32) || !ascii(entry.gname, 32)) return undefined;
  // As tar-stream writes them (tarHeader): whole seconds truncated toward zero.
  const seconds = (entry.mtime.getTime() / 1000) | 0;
  const fields = [
    octal(entry.mode & 0o7777, OCTAL_FIELD.mode),
    octal(entry.uid, OCTAL_FIELD.id),
    octal(entry.gid, OCTAL_FIELD.id),
    octal(size, OCTAL_FIELD.size),
    seconds >= 0 ? octal(seconds, OCTAL_FIELD.mtime) : undefined,
  ];
  if (fields.some((f) => f === undefined)) return undefined;
  const [mode, uid, gid, sizeField, mtime] = fields as string[];
  const block = Buffer.alloc(512);
  block.write(name, 0, 'latin1');
  block.write(mode as string, 100, 'latin1');
  block.write(uid as string, 108, 'latin1');
  block.write(gid as string, 116, 'latin1');
  block.write(sizeField as string, 124, 'latin1');
  block.write(mtime as string, 136, 'latin1');
  block[156] = typeflag;
  block.write('ustar\x0000', 257, 'latin1');
  if (entry.uname) block.write(entry.uname, 265, 'latin1');
  if (entry.gname) block.write(entry.gname, 297, 'latin1');
  block.write('000000 ', 329, 'latin1');
  block.write('000000 ', 337, 'latin1');
  block.write(octal(headerChecksum(block), 6) as string, 148, 'latin1');
  return block;
}

/** The checksum of a header block: the sum of its bytes, its own field counted as eight spaces. */
export function headerChecksum(block: Uint8Array): number {
  let sum = 8 * 0x20;
  for (let i = 0; i < 512; i++) if (i < 148 || i >= 156) sum += block[i] ?? 0;
  return sum;
}
