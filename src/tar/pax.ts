import type { Header } from 'tar-stream';
import { CkptError } from '../errors.js';

/**
 * PAX extended-header records (POSIX.1-2001 `x` headers) as tar header fields: the ones a
 * checkpoint's tree uses. Shared by the index of uncompressed archives (seek.ts), which parses the
 * records itself, and by readTar(), where tar-stream applies only path, linkpath and size, so that
 * an archive gives the same tree whether it is read by offset or as a stream.
 */

/** What PAX records may say of an entry. */
export type PaxFields = Partial<Pick<Header, 'name' | 'size' | 'uid' | 'gid' | 'uname' | 'gname' | 'mtime'>> & { linkname?: string };

/**
 * The fields `records` set; `invalid` makes the error for a value that cannot be one. A sparse file
 * (GNU tar --sparse in PAX form) is refused: its content would be read as the packed map and data,
 * a silently wrong memory dump, as its GNU header form is refused by its typeflag.
 */
export function paxFields(records: ReadonlyMap<string, string>, invalid: (key: string, value: string) => Error, subject: string): PaxFields {
  if ([...records.keys()].some((key) => key.startsWith('GNU.sparse.'))) {
    const name = records.get('GNU.sparse.name') ?? records.get('path') ?? '';
    throw new CkptError('UNSUPPORTED', `entry ${JSON.stringify(name)} is a sparse file (GNU.sparse PAX records), which ckpt does not expand: archive it without tar --sparse`, {
      subject,
    });
  }
  const integer = (key: string): number | undefined => {
    const value = records.get(key);
    if (value === undefined) return undefined;
    if (!/^\d{1,16}$/.test(value) || !Number.isSafeInteger(Number(value))) throw invalid(key, value);
    return Number(value);
  };
  const fields: PaxFields = {
    // An empty path or linkpath does not replace the header's, as with tar-stream.
    name: records.get('path') || undefined,
    linkname: records.get('linkpath') || undefined,
    size: integer('size'),
    uid: integer('uid'),
    gid: integer('gid'),
    uname: records.get('uname'),
    gname: records.get('gname'),
  };
  const mtime = records.get('mtime');
  if (mtime !== undefined) {
    // Seconds with a fraction (GNU tar writes nanoseconds); a Date keeps milliseconds.
    const parts = /^(-?)(\d{1,15})(?:\.(\d*))?$/.exec(mtime);
    if (!parts) throw invalid('mtime', mtime);
    const ms = Number(parts[2]) * 1000 + Number((parts[3] ?? '').padEnd(3, '0').slice(0, 3));
    fields.mtime = new Date(parts[1] ? -ms : ms);
  }
  // Only what the records say: the rest stays the header's.
  return Object.fromEntries(Object.entries(fields).filter(([, value]) => value !== undefined)) as PaxFields;
}
