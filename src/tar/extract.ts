import { constants, type Stats } from 'node:fs';
import { type FileHandle, chmod, chown, lchown, link, lstat, lutimes, mkdir, open, readdir, rm, symlink, utimes } from 'node:fs/promises';
import { join, posix } from 'node:path';
import type { Readable } from 'node:stream';
import type { SourceEntry, TreeEntry } from '../checkpoint/entry.js';
import { CkptError, fromSystemError } from '../errors.js';
import { corruptArchive, readTar } from './read.js';
import { assertNotThroughLink, safeEntryPath } from './safety.js';
import { PRIVATE_DIR, PRIVATE_FILE } from '../fs/private-modes.js';

/**
 * Safe extraction of a tar stream into a directory, with the rules of node-tar's unpack and the
 * file-system semantics of OCI layers. Names and link targets are checked by read.ts's `treeEntry`
 * (through safety.ts); this module adds what needs the file system: nothing is ever written through a
 * symbolic link an earlier entry planted, nothing existing is written into (a replaced file is
 * unlinked and created anew, so other hard links to it keep their content), and whiteouts apply.
 */

/** Deeper paths are refused before they reach the file system (node-tar's default too). */
export const MAX_DEPTH = 1024;

const WHITEOUT_PREFIX = '.wh.';
const OPAQUE_WHITEOUT = '.wh..wh..opq';

/** O_EXCL and O_NOFOLLOW: a file is only ever created, never opened through whatever is in the way. */
const CREATE_FILE = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
// Files and directories are created private (PRIVATE_FILE, PRIVATE_DIR); their own modes come at the end.

export interface ExtractOptions {
  /** The archive or layer being read, named in messages about its entries. */
  subject: string;
  signal?: AbortSignal;
  /**
   * Name of the destination in messages about writing (the final name when `dest` is a temporary
   * directory that is renamed at the end). Defaults to `dest`.
   */
  destinationName?: string;
  /**
   * For layers that promise not to overlap (a ckpt checkpoint image): no entry may replace or
   * white out anything already in the tree, and every path is only ever created. That makes it
   * safe to run several extractions into one tree at once, even when the promise is a lie: a
   * check made by one can never be undone by another.
   */
  exclusive?: boolean;
  /**
   * Collects directory modes and times to apply once after several extractions into one tree
   * (later layers win). Without it, extractTar applies them itself at the end.
   */
  directories?: DirectoryAttributes;
  /**
   * Collects the symbolic links of several extractions into one tree, checked once it is whole.
   * Without it, extractEntries checks its own at the end.
   */
  links?: SymlinkLog;
  /**
   * This stream's position among the extractions sharing `directories`: where several give one
   * directory attributes, the highest position wins (the later layer), whichever ends first.
   */
  position?: number;
}

export interface ExtractStats {
  /** Entries read, including the ones that only removed something. */
  entries: number;
  files: number;
  directories: number;
  symlinks: number;
  hardlinks: number;
  whiteouts: number;
  /** Bytes of file content written. */
  bytes: number;
}

/**
 * An entry read from a tar. Its producer may also write a file's content itself, straight into an
 * open file at `position`, resolving with the bytes written: a worker thread that decompressed
 * them into memory of its own, which no stream then needs to copy.
 */
export interface TarEntry extends SourceEntry {
  writeInto?: (fd: number, position: number) => Promise<number>;
}

/** Extracts `input` (an uncompressed tar stream) into the existing directory `dest`. */
export async function extractTar(input: Readable, dest: string, options: ExtractOptions): Promise<ExtractStats> {
  const { signal } = options;
  const onAbort = () => input.destroy(aborted(options.subject));
  if (signal?.aborted) {
    input.destroy();
    throw aborted(options.subject);
  }
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    return await extractEntries(readTar(input, options.subject), dest, options);
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

/** Extracts a tar's entries, as readTar() or a layer worker gives them, into the existing directory `dest`. */
export async function extractEntries(entries: AsyncIterable<TarEntry>, dest: string, options: ExtractOptions): Promise<ExtractStats> {
  const { signal } = options;
  const directories = options.directories ?? new DirectoryAttributes();
  const links = options.links ?? new SymlinkLog();
  const extraction = new Extraction(dest, { ...options, links }, directories);
  if (signal?.aborted) throw aborted(options.subject);
  for await (const entry of entries) {
    if (signal?.aborted) throw aborted(options.subject);
    await extraction.add(entry);
  }
  if (!options.links) await links.check(dest);
  if (!options.directories) await directories.apply(dest, options.destinationName ?? dest);
  return extraction.stats;
}

/** Symbolic links written into a tree, with the layer of each, for assertNotThroughLink once the tree is whole. */
export class SymlinkLog {
  readonly #links: Array<{ path: string; linkname: string; subject: string }> = [];

  add(path: string, linkname: string, subject: string): void {
    this.#links.push({ path, linkname, subject });
  }

  async check(root: string): Promise<void> {
    const isSymlink = async (path: string) => (await lstatIfExists(join(root, path)))?.isSymbolicLink() === true;
    for (const { path, linkname, subject } of this.#links) {
      // A later layer may have replaced the link with something else.
      if (await isSymlink(path)) await assertNotThroughLink(path, linkname, isSymlink, subject);
    }
  }
}

interface DirectoryAttrs {
  position: number;
  mode: number;
  uid: number;
  gid: number;
  mtime: Date;
}

/**
 * Modes and times of directories, applied after their contents are written: a read-only
 * directory could not be filled, and every file created in a directory changes its mtime.
 */
export class DirectoryAttributes {
  readonly #pending = new Map<string, DirectoryAttrs>();

  set(path: string, attrs: DirectoryAttrs): void {
    const before = this.#pending.get(path);
    if (!before || before.position <= attrs.position) this.#pending.set(path, attrs);
  }

  /** Forgets a directory that a later entry removed, and everything below it. */
  forget(path: string): void {
    for (const key of this.#pending.keys()) {
      if (key === path || key.startsWith(`${path}/`)) this.#pending.delete(key);
    }
  }

  /** Applies everything recorded, deepest first so that no parent's time is disturbed afterwards. */
  async apply(root: string, destinationName = root): Promise<void> {
    const paths = [...this.#pending.keys()].sort((a, b) => depth(b) - depth(a));
    const owners = keepsOwners();
    for (const path of paths) {
      const attrs = this.#pending.get(path);
      // chmod and utimes follow symbolic links, so the whole path is checked again first.
      if (!attrs || !(await isRealDirectory(root, path))) continue;
      const abs = join(root, path);
      try {
        if (owners) await chown(abs, attrs.uid, attrs.gid);
        // Without root, the owner keeps rwx on its own directories, or it could neither read
        // the checkpoint back nor remove it (as rootless umoci does).
        await chmod(abs, owners ? attrs.mode : attrs.mode | PRIVATE_DIR);
        await utimes(abs, attrs.mtime, attrs.mtime);
      } catch (err) {
        throw fromSystemError(err, join(destinationName, path), true);
      }
    }
    this.#pending.clear();
  }
}

/** One extraction of one tar stream into a tree. */
class Extraction {
  readonly stats: ExtractStats = { entries: 0, files: 0, directories: 0, symlinks: 0, hardlinks: 0, whiteouts: 0, bytes: 0 };
  readonly #root: string;
  readonly #options: ExtractOptions;
  readonly #directories: DirectoryAttributes;
  readonly #owners = keepsOwners();
  /** Directories already checked (or made) by this extraction: no need to lstat them again. */
  readonly #knownDirs = new Set<string>();
  /** Paths this stream wrote: an opaque whiteout hides only what lower layers put there. */
  readonly #written = new Set<string>();

  constructor(root: string, options: ExtractOptions, directories: DirectoryAttributes) {
    this.#root = root;
    this.#options = options;
    this.#directories = directories;
  }

  /** Applies one entry; a file's content is read (or written by its producer) only when the file is. */
  async add(source: TarEntry): Promise<void> {
    const { entry } = source;
    const path = entry.path;
    if (depth(path) > MAX_DEPTH) throw this.#unsafe(path, `is nested more than ${MAX_DEPTH} directories deep`);
    this.stats.entries++;
    const base = posix.basename(path);
    try {
      if (base.startsWith(WHITEOUT_PREFIX)) {
        await this.#whiteout(path, base);
        return;
      }
      switch (entry.type) {
        case 'directory':
          await this.#directory(entry);
          break;
        case 'file':
          await this.#file(source);
          break;
        case 'symlink':
          await this.#symlink(entry);
          break;
        case 'hardlink':
          await this.#hardlink(entry);
          break;
      }
      this.#written.add(path);
    } catch (err) {
      // In exclusive mode, another extraction may create the same path between our check and ours.
      if (this.#options.exclusive && (err as NodeJS.ErrnoException).code === 'EEXIST') throw this.#overlap(path);
      const mapped = fromSystemError(err, join(this.#options.destinationName ?? this.#root, path), true);
      // What is neither ours nor the file system's came out of the entry's stream: the archive broke.
      throw mapped instanceof CkptError ? mapped : corruptArchive(err, this.#options.subject);
    }
  }

  async #directory(entry: TreeEntry): Promise<void> {
    const abs = await this.#prepare(entry.path, 'directory');
    // mkdir fails only when another extraction put something else there in the meantime.
    if (!this.#knownDirs.has(entry.path) && !(await this.#mkdir(entry.path, abs))) throw this.#overlap(entry.path);
    this.#directories.set(entry.path, { position: this.#options.position ?? 0, mode: entry.mode, uid: entry.uid, gid: entry.gid, mtime: entry.mtime });
    this.stats.directories++;
  }

  async #file({ entry, open: openContent, writeInto }: TarEntry): Promise<void> {
    const abs = await this.#prepare(entry.path, 'file');
    const handle = await open(abs, CREATE_FILE, PRIVATE_FILE);
    try {
      const written = writeInto
        ? await writeInto(handle.fd, 0)
        : openContent
          ? await writeAll(handle, openContent(), this.#options.signal)
          : 0;
      // tar-stream ends an entry's stream early when the archive is cut short.
      if (written !== entry.size) throw this.#corrupt(entry.path, `is truncated (${written} of ${entry.size} bytes)`);
      // chown before chmod: changing the owner clears set-user-ID bits.
      if (this.#owners) await handle.chown(entry.uid, entry.gid);
      await handle.chmod(entry.mode);
      await handle.utimes(entry.mtime, entry.mtime);
    } finally {
      await handle.close();
    }
    this.stats.files++;
    this.stats.bytes += entry.size;
  }

  async #symlink(entry: TreeEntry): Promise<void> {
    // treeEntry has checked the target with assertSafeLink; the lstat walk covers what it cannot see.
    if (!entry.linkname) throw this.#corrupt(entry.path, 'is a symbolic link without a target');
    const abs = await this.#prepare(entry.path, 'symlink');
    await symlink(entry.linkname, abs);
    this.#options.links?.add(entry.path, entry.linkname, this.#options.subject);
    if (this.#owners) await lchown(abs, entry.uid, entry.gid);
    await lutimes(abs, entry.mtime, entry.mtime);
    this.stats.symlinks++;
  }

  async #hardlink(entry: TreeEntry): Promise<void> {
    if (!entry.linkname) throw this.#corrupt(entry.path, 'is a hard link without a target');
    const target = safeEntryPath(entry.linkname, this.#options.subject);
    if (target === '' || target === entry.path) throw this.#corrupt(entry.path, 'is a hard link to itself');
    // The target must be a file of this tree reached without symbolic links: link(2) would
    // otherwise happily link a file from anywhere on the same file system into the checkpoint.
    const info = (await this.#parents(target, false)) ? await lstatIfExists(join(this.#root, target)) : undefined;
    if (!info?.isFile()) {
      throw this.#corrupt(entry.path, `is a hard link to ${JSON.stringify(target)}, which is not a file earlier in the tree`);
    }
    const abs = await this.#prepare(entry.path, 'hardlink');
    await link(join(this.#root, target), abs);
    this.stats.hardlinks++;
  }

  /** Applies `.wh.NAME` (remove NAME) or `.wh..wh..opq` (hide what lower layers put in the directory). */
  async #whiteout(path: string, base: string): Promise<void> {
    this.stats.whiteouts++;
    // Other `.wh..wh.` names are aufs bookkeeping, never part of the tree.
    if (base !== OPAQUE_WHITEOUT && base.startsWith(`${WHITEOUT_PREFIX}${WHITEOUT_PREFIX}`)) return;
    if (this.#options.exclusive) throw this.#corrupt(path, 'is a whiteout, but the layers of this image must not overlap');
    const dir = parentOf(path);
    const name = base.slice(WHITEOUT_PREFIX.length);
    if (base !== OPAQUE_WHITEOUT && (name === '' || name === '.' || name === '..')) {
      throw this.#unsafe(path, 'whites out a name that is not a file');
    }
    // Nothing below a missing directory to remove; a symbolic link on the way is refused.
    if (!(await this.#parents(path, false))) return;
    if (base !== OPAQUE_WHITEOUT) {
      const victim = dir === '' ? name : `${dir}/${name}`;
      // A whiteout only hides what lower layers hold, never an entry of its own layer (nor what
      // that entry holds, if it is a directory).
      if (!this.#written.has(victim)) await this.#remove(victim);
      else await this.#hideLower(victim);
      return;
    }
    await this.#hideLower(dir);
  }

  /** Removes what lower layers left in `dir`, also inside the directories this layer has there. */
  async #hideLower(dir: string): Promise<void> {
    const info = await lstatIfExists(join(this.#root, dir));
    if (!info?.isDirectory()) return;
    for (const child of await readdir(join(this.#root, dir))) {
      const childPath = dir === '' ? child : `${dir}/${child}`;
      if (!this.#written.has(childPath)) await this.#remove(childPath);
      else await this.#hideLower(childPath);
    }
  }

  /**
   * Makes the parents of `path` exist as real directories and clears `path` itself for an entry of
   * `type` (OCI layer semantics: a later entry replaces an earlier one, a directory merges with a
   * directory). Returns the absolute path.
   */
  async #prepare(path: string, type: TreeEntry['type']): Promise<string> {
    await this.#parents(path, true);
    const abs = join(this.#root, path);
    if (this.#knownDirs.has(path)) {
      if (type === 'directory') return abs;
    } else {
      const info = await lstatIfExists(abs);
      if (!info) return abs;
      if (info.isDirectory() && type === 'directory') {
        this.#knownDirs.add(path);
        return abs;
      }
    }
    if (this.#options.exclusive) throw this.#overlap(path);
    await this.#remove(path);
    return abs;
  }

  /**
   * Walks the parents of `path` with lstat, refusing symbolic links and creating missing
   * directories when `create` is set. Returns false when a parent is missing and not created.
   */
  async #parents(path: string, create: boolean): Promise<boolean> {
    const parts = path.split('/');
    let current = '';
    for (let i = 0; i < parts.length - 1; i++) {
      current = current === '' ? (parts[i] as string) : `${current}/${parts[i] as string}`;
      // A directory an entry is written in is part of its layer, as if the layer had listed it.
      if (create) this.#written.add(current);
      if (this.#knownDirs.has(current)) continue;
      const abs = join(this.#root, current);
      let info = await lstatIfExists(abs);
      if (!info) {
        if (!create) return false;
        if (await this.#mkdir(current, abs)) continue;
        info = await lstat(abs);
      }
      if (info.isSymbolicLink()) {
        throw this.#unsafe(path, `would be written through the symbolic link ${JSON.stringify(current)}`);
      }
      if (!info.isDirectory()) throw this.#corrupt(path, `is below ${JSON.stringify(current)}, which is not a directory`);
      this.#knownDirs.add(current);
    }
    return true;
  }

  /** Creates a directory; false when something appeared there first (another layer, at the same moment). */
  async #mkdir(path: string, abs: string): Promise<boolean> {
    try {
      await mkdir(abs, { mode: PRIVATE_DIR });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
        const info = await lstat(abs);
        if (info.isDirectory()) {
          this.#knownDirs.add(path);
          return true;
        }
        if (info.isSymbolicLink()) throw this.#unsafe(path, 'is a symbolic link where a directory belongs');
        return false;
      }
      throw err;
    }
    this.#knownDirs.add(path);
    return true;
  }

  /** Removes whatever is at `path` (a whole directory included; rm never follows symbolic links). */
  async #remove(path: string): Promise<void> {
    await rm(join(this.#root, path), { recursive: true, force: true });
    this.#directories.forget(path);
    for (const known of this.#knownDirs) {
      if (known === path || known.startsWith(`${path}/`)) this.#knownDirs.delete(known);
    }
  }

  #unsafe(path: string, why: string): CkptError {
    return new CkptError('UNSAFE_PATH', `entry ${JSON.stringify(path)} ${why}`, { subject: this.#options.subject });
  }

  #overlap(path: string): CkptError {
    return this.#corrupt(path, 'is already in the tree, but the layers of this image must not overlap');
  }

  #corrupt(path: string, why: string): CkptError {
    return new CkptError('CORRUPT_ARCHIVE', `entry ${JSON.stringify(path)} ${why}`, { subject: this.#options.subject });
  }
}

/** Owners are kept only as root: a checkpoint's files belong to root, and only root may chown. */
function keepsOwners(): boolean {
  return process.getuid?.() === 0;
}

function depth(path: string): number {
  return path === '' ? 0 : path.split('/').length;
}

function parentOf(path: string): string {
  const dir = posix.dirname(path);
  return dir === '.' ? '' : dir;
}

async function lstatIfExists(path: string): Promise<Stats | undefined> {
  try {
    return await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** True when every component of `path` below `root` is a directory, none a symbolic link. */
async function isRealDirectory(root: string, path: string): Promise<boolean> {
  let current = root;
  for (const part of path.split('/')) {
    current = join(current, part);
    const info = await lstatIfExists(current);
    if (!info?.isDirectory()) return false;
  }
  return true;
}

/** Content is written in batches of about this size: one system call per MiB, not per 16 KiB chunk. */
const WRITE_BATCH = 1 << 20;

/**
 * Copies a stream into an open file. The next chunks are read only once the last batch is on
 * disk, so memory stays bounded by one batch whatever the file's size.
 */
async function writeAll(handle: FileHandle, content: AsyncIterable<Buffer>, signal: AbortSignal | undefined): Promise<number> {
  let total = 0;
  let batch: Buffer[] = [];
  let batched = 0;
  const flush = async () => {
    const { bytesWritten } = await handle.writev(batch);
    // A short write (rare: a signal, a nearly full disk) is finished by plain writes, which report ENOSPC.
    const rest = bytesWritten < batched ? Buffer.concat(batch).subarray(bytesWritten) : undefined;
    for (let offset = 0; rest && offset < rest.length; ) offset += (await handle.write(rest, offset)).bytesWritten;
    batch = [];
    batched = 0;
  };
  for await (const chunk of content) {
    signal?.throwIfAborted();
    batch.push(chunk);
    batched += chunk.length;
    total += chunk.length;
    if (batched >= WRITE_BATCH) await flush();
  }
  if (batched > 0) await flush();
  return total;
}

function aborted(subject: string): CkptError {
  return new CkptError('ABORTED', 'operation aborted', { subject });
}
