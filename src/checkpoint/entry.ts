import type { Readable } from 'node:stream';

/** One file-system entry of a checkpoint tree, whatever it was read from. */
export interface TreeEntry {
  /** Relative POSIX path from the tree root, no `./`, no trailing slash; checked to stay inside. */
  path: string;
  type: 'file' | 'directory' | 'symlink' | 'hardlink';
  mode: number;
  uid: number;
  gid: number;
  uname?: string;
  gname?: string;
  mtime: Date;
  /** Bytes of content; 0 for anything but a file. */
  size: number;
  /** Target of a link. */
  linkname?: string;
}

/** An entry as a source yields it: content may be read once, before asking for the next entry. */
export interface SourceEntry {
  entry: TreeEntry;
  /** The file's bytes; undefined for anything but a file. Unread content is skipped. */
  open?: () => Readable;
  /**
   * Where the content lies, uncompressed, in a file that can be read by offset (a directory's
   * file, an uncompressed archive): such content may be read later, elsewhere, in parallel.
   */
  region?: FileRegion;
}

/** `size` bytes of content (the entry's) at `offset` in the file `path`. */
export interface FileRegion {
  path: string;
  offset: number;
}

/**
 * Where a checkpoint tree comes from. Every kind yields the tree's entries in an order stable for
 * that source: a directory's sorted by name, an archive's as the archive holds them (so a tree
 * built from its archive and from its unpacked directory may give different layer digests).
 */
export interface CheckpointSource {
  /** What the user named: a path or a reference. */
  readonly name: string;
  readonly kind: 'archive' | 'directory' | 'image';
  entries(signal?: AbortSignal): AsyncGenerator<SourceEntry>;
  /**
   * A string that changes whenever the checkpoint's content may have changed (paths, sizes, times,
   * inodes), for recognising a checkpoint that was already built.
   */
  fingerprint(): Promise<string>;
  /** Releases what reading needed (registry connections). */
  close?(): Promise<void>;
}
