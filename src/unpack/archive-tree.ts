import { posix } from 'node:path';
import type { TreeEntry } from '../checkpoint/entry.js';
import { CkptError } from '../errors.js';
import { MAX_DEPTH } from '../tar/extract.js';
import { assertNotThroughLink, safeEntryPath } from '../tar/safety.js';

/**
 * What an archive written entry by entry already holds, so that it obeys the rules extraction
 * enforces with lstat: nothing below a symbolic link, hard links only to files before them, no
 * path deeper than MAX_DEPTH, and for `exclusive` (non-overlapping) layers no path twice but
 * directories. Memory grows with the number of entries (a few thousand for a checkpoint), never
 * with their size.
 */
export class ArchiveTree {
  readonly #kinds = new Map<string, TreeEntry['type']>();
  /** Symbolic links by path, with the layer each came from. */
  readonly #links = new Map<string, { linkname: string; subject: string }>();
  readonly #exclusive: boolean;

  constructor(exclusive: boolean) {
    this.#exclusive = exclusive;
  }

  /** The entry as it goes into the archive, or undefined for one to leave out (a whiteout). */
  admit(entry: TreeEntry, subject: string): TreeEntry | undefined {
    const { path } = entry;
    const parts = path.split('/');
    if (parts.length > MAX_DEPTH) throw unsafe(subject, path, `is nested more than ${MAX_DEPTH} directories deep`);
    if (posix.basename(path).startsWith('.wh.')) {
      // One layer's whiteouts hide what lower layers hold, and a streamed archive has none.
      if (this.#exclusive) throw corrupt(subject, path, 'is a whiteout, but the layers of this image must not overlap');
      return undefined;
    }
    this.#checkParents(parts, subject, path);
    let admitted = entry;
    if (entry.type === 'hardlink') {
      const target = safeEntryPath(entry.linkname ?? '', subject);
      const kind = this.#kinds.get(target);
      if (target === path || (kind !== 'file' && kind !== 'hardlink')) {
        throw corrupt(subject, path, `is a hard link to ${JSON.stringify(target)}, which is not a file earlier in the archive`);
      }
      admitted = { ...entry, linkname: target };
    }
    const before = this.#kinds.get(path);
    if (before !== undefined && !(before === 'directory' && entry.type === 'directory')) {
      if (this.#exclusive) throw corrupt(subject, path, 'is already in the archive, but the layers of this image must not overlap');
      // Within one layer a later entry replaces an earlier one, as extracting the archive would.
      if (before === 'directory') this.#forgetBelow(path);
    }
    this.#kinds.set(path, entry.type);
    if (entry.type === 'symlink') this.#links.set(path, { linkname: entry.linkname ?? '', subject });
    else this.#links.delete(path);
    return admitted;
  }

  /** Once every entry is in: no symbolic link reaches its target through another. */
  async checkLinks(): Promise<void> {
    const isSymlink = (path: string) => this.#kinds.get(path) === 'symlink';
    for (const [path, { linkname, subject }] of this.#links) await assertNotThroughLink(path, linkname, isSymlink, subject);
  }

  #checkParents(parts: string[], subject: string, path: string): void {
    let current = '';
    for (const part of parts.slice(0, -1)) {
      current = current === '' ? part : `${current}/${part}`;
      const kind = this.#kinds.get(current);
      if (kind === undefined) this.#kinds.set(current, 'directory');
      else if (kind === 'symlink') throw unsafe(subject, path, `would be written through the symbolic link ${JSON.stringify(current)}`);
      else if (kind !== 'directory') throw corrupt(subject, path, `is below ${JSON.stringify(current)}, which is not a directory`);
    }
  }

  #forgetBelow(path: string): void {
    for (const key of this.#kinds.keys()) if (key.startsWith(`${path}/`)) this.#kinds.delete(key);
    for (const key of this.#links.keys()) if (key.startsWith(`${path}/`)) this.#links.delete(key);
  }
}

function unsafe(subject: string, path: string, why: string): CkptError {
  return new CkptError('UNSAFE_PATH', `entry ${JSON.stringify(path)} ${why}`, { subject });
}

function corrupt(subject: string, path: string, why: string): CkptError {
  return new CkptError('CORRUPT_ARCHIVE', `entry ${JSON.stringify(path)} ${why}`, { subject });
}
