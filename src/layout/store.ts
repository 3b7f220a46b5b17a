import type { WriteStream } from 'node:fs';
import { chmod, type FileHandle, mkdir, open, readFile, readdir, rename, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { PassThrough, Readable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { FetchOptions, StorePushOptions, TagOptions, Target, TransferOptions } from '../content/target.js';
import { checkBytes, DigestStream, HashedReadable, VerifyStream } from '../content/verify.js';
import { CkptError, fromSystemError, guardErrors } from '../errors.js';
import { digestParts, isDigest } from '../oci/digest.js';
import { Annotation, MediaType } from '../oci/mediatypes.js';
import { type Descriptor, IndexSchema, type Index, LayoutMarkerSchema, parseJson } from '../oci/schemas.js';
import { inVanishingDir } from '../fs/vanishing-dir.js';
import { ownedName, removeOrphans } from '../fs/owned-names.js';
import { withLockFile } from './lock-file.js';
import { createWhole } from '../fs/create-whole.js';
import { USERS_DIR, hasUsers, markUser, unmarkUser } from './users.js';
import { PRIVATE_DIR } from '../fs/private-modes.js';

const LAYOUT_FILE = 'oci-layout';
const INDEX_FILE = 'index.json';
/** Taken to change index.json, and to mark the layout as in use (users.ts). */
const LOCK_FILE = `${INDEX_FILE}.lock`;
/**
 * What a failed build's cleanup moves aside, in the layout or beside it, before deleting it:
 * `.removed.<HOLDER>.<random>`, so that another process can tell what a crash left.
 */
const REMOVED_PREFIX = '.removed.';
/** Blobs are written here first and renamed into blobs/ once complete and verified. */
const INGEST_DIR = '.ingest';
/** What a layout holds while it is being made, before its oci-layout file. */
const SKELETON = new Set(['blobs', INDEX_FILE]);

export interface OpenLayoutOptions {
  /** Create the layout when the directory is missing or empty. */
  create?: boolean;
}

/**
 * An OCI image layout directory. Blobs are written under a temporary name and renamed into place
 * when complete; a tag is added to index.json (itself replaced atomically) only after the caller
 * has written every blob it needs, which the graph copy guarantees.
 */
export class OciLayout implements Target {
  readonly name: string;
  readonly dir: string;
  /** Serialises index.json updates made through this object (other processes: index.json.lock). */
  #indexLock: Promise<unknown> = Promise.resolve();
  /** Blob writes in flight; the ingest area is removed when the last one ends. */
  #writing = 0;
  /** This process's mark in the layout while it is open for writing (users.ts). */
  #mark: string | undefined;

  private constructor(dir: string) {
    this.dir = dir;
    this.name = `oci:${dir}`;
  }

  /**
   * Opens an existing layout, or creates one where `create` is set and the directory is missing or
   * empty. With `create` the layout is open for writing: this process marks it as in use until
   * close(), so that a build failing in another process leaves it alone.
   */
  static async open(dir: string, options: OpenLayoutOptions = {}): Promise<OciLayout> {
    const layout = new OciLayout(resolve(dir));
    for (let attempt = 1; ; attempt++) {
      const state = await layoutState(layout.dir);
      if (state === 'other' && options.create) {
        // Something else where the layout is to be written (a file, a directory of other things).
        throw new CkptError('DESTINATION_EXISTS', 'is in the way: it is not an OCI image layout, nor an empty directory', { subject: layout.name });
      }
      if (state === 'other' || (state === 'partial' && !options.create)) {
        throw new CkptError('NOT_LAYOUT', 'exists but is not an OCI image layout (no oci-layout file)', { subject: layout.name });
      }
      if (state !== 'layout' && !options.create) {
        throw new CkptError('NOT_FOUND', 'no OCI image layout here', { subject: layout.name });
      }
      if (!options.create) return layout;
      try {
        if (state !== 'layout') await createLayout(layout.dir, state === 'partial' ? 'empty' : state);
        // Marked under the lock a failed build's removal holds: before it looks, or after it is done.
        layout.#mark = await withLockFile(layout.#lockPath, async () =>
          (await layoutState(layout.dir)) === 'layout' ? markUser(layout.dir) : undefined,
        );
        if (layout.#mark) {
          await removeLeftovers(layout.dir);
          return layout;
        }
      } catch (err) {
        // Only a layout gone under us (ENOENT) is made again; permission denied and the like are reported.
        const gone = (err as NodeJS.ErrnoException).code === 'ENOENT' || (err instanceof CkptError && err.code === 'NOT_FOUND');
        if (!gone || (await layoutState(layout.dir)) !== 'missing') throw fromSystemError(err, layout.name, true);
      }
      // A failed build elsewhere removed or emptied the layout in between: make it again.
      if (attempt === 3) throw new CkptError('WRITE_FAILED', 'the layout was removed while it was opened, three times', { subject: layout.name });
    }
  }

  /** Ends writing: removes this process's mark. */
  async close(): Promise<void> {
    const mark = this.#mark;
    this.#mark = undefined;
    if (mark) await unmarkUser(mark);
  }

  get #lockPath(): string {
    return join(this.dir, LOCK_FILE);
  }

  blobPath(digest: string): string {
    const { algorithm, hex } = digestParts(digest);
    return join(this.dir, 'blobs', algorithm, hex);
  }

  async exists(desc: Descriptor): Promise<boolean> {
    try {
      const info = await stat(this.blobPath(desc.digest));
      return info.isFile() && info.size === desc.size;
    } catch {
      return false;
    }
  }

  async fetch(desc: Descriptor, options: FetchOptions = {}): Promise<Readable> {
    const subject = `${this.name}@${desc.digest}`;
    let handle: FileHandle;
    try {
      handle = await open(this.blobPath(desc.digest));
    } catch (err) {
      throw fromSystemError(err, subject);
    }
    const verify = new VerifyStream(desc, subject, !options.digestCheckedByCaller);
    const stream = handle.createReadStream({ signal: options.signal });
    stream.on('error', (err) => verify.destroy(fromSystemError(err, subject) as Error));
    return stream.pipe(verify);
  }

  async push(desc: Descriptor, content: Readable, options: StorePushOptions = {}): Promise<void> {
    // Read only after the look for the blob and the temporary file: an abort may come first.
    guardErrors(content);
    if (!options.knownMissing && (await this.exists(desc))) {
      content.resume();
      options.onProgress?.({ mediaType: desc.mediaType, digest: desc.digest, bytes: desc.size, total: desc.size, state: 'skipped' });
      return;
    }
    await this.#write(content, new VerifyStream(desc, `${this.name}@${desc.digest}`), desc.digest, options, desc);
  }

  async ingest(mediaType: string, content: Readable, options: TransferOptions = {}): Promise<Descriptor> {
    guardErrors(content);
    if (content instanceof HashedReadable) {
      // Hashed by its producer: counted on the way, not hashed again.
      await this.#write(content, new PassThrough(), () => content.digest, options, { mediaType });
      return { mediaType, digest: content.digest, size: content.size };
    }
    const digester = new DigestStream();
    await this.#write(content, digester, () => digester.digest, options, { mediaType });
    return { mediaType, digest: digester.digest, size: digester.size };
  }

  async #write(
    content: Readable,
    check: Transform,
    digest: string | (() => string),
    options: TransferOptions,
    progressDesc: { mediaType: string; digest?: string; size?: number },
  ): Promise<void> {
    const ingestDir = join(this.dir, INGEST_DIR);
    // Named for this process, so that what a killed one left is known for a leftover (removeLeftovers).
    const temp = join(ingestDir, ownedName());
    let bytes = 0;
    const report = options.onProgress;
    if (report) {
      report({ mediaType: progressDesc.mediaType, digest: progressDesc.digest, bytes, total: progressDesc.size, state: 'start' });
      check.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
        report({ mediaType: progressDesc.mediaType, digest: progressDesc.digest, bytes, total: progressDesc.size, state: 'progress' });
      });
    }
    this.#writing++;
    let file: WriteStream | undefined;
    try {
      file = await createTemp(ingestDir, temp);
      await pipeline(content, check, file, { signal: options.signal });
      const final = this.blobPath(typeof digest === 'string' ? digest : digest());
      await mkdir(join(final, '..'), { recursive: true });
      await rename(temp, final);
      report?.({
        mediaType: progressDesc.mediaType,
        digest: typeof digest === 'string' ? digest : digest(),
        bytes,
        total: bytes,
        state: 'done',
      });
    } catch (err) {
      // An abort settles pipeline() before the stream has closed its file.
      if (file && !file.closed) await new Promise<void>((closed) => file?.once('close', () => closed()));
      await rm(temp, { force: true });
      throw fromSystemError(err, this.name, true);
    } finally {
      // Leave no trace of the ingest area once nothing is in flight.
      if (--this.#writing === 0) await rmdir(ingestDir).catch(() => undefined);
    }
  }

  async readIndex(): Promise<Index> {
    const path = join(this.dir, INDEX_FILE);
    let bytes: Buffer;
    try {
      bytes = await readFile(path);
    } catch (err) {
      throw fromSystemError(err, path);
    }
    return parseJson(IndexSchema, bytes, path, 'NOT_LAYOUT');
  }

  async resolve(reference: string): Promise<Descriptor> {
    const index = await this.readIndex();
    if (isDigest(reference)) {
      const listed = index.manifests.find((m) => m.digest === reference);
      if (listed) return withoutRefName(listed);
      const sniffed = await this.#sniff(reference);
      if (sniffed) return sniffed;
    } else {
      const tagged = index.manifests.find((m) => m.annotations?.[Annotation.refName] === reference);
      if (tagged) return withoutRefName(tagged);
    }
    throw new CkptError('NOT_FOUND', `no image tagged ${JSON.stringify(reference)}`, { subject: this.name });
  }

  /** A manifest stored as a blob but not listed in index.json: its mediaType field says what it is. */
  async #sniff(digest: string): Promise<Descriptor | undefined> {
    try {
      const bytes = await readFile(this.blobPath(digest));
      const parsed = JSON.parse(bytes.toString()) as { mediaType?: unknown; manifests?: unknown };
      const mediaType =
        typeof parsed.mediaType === 'string' ? parsed.mediaType : Array.isArray(parsed.manifests) ? MediaType.imageIndex : MediaType.imageManifest;
      return { mediaType, digest, size: bytes.length };
    } catch {
      return undefined;
    }
  }

  async tag(desc: Descriptor, tag: string, options: TagOptions = {}): Promise<void> {
    const { bytes } = options;
    if (bytes) {
      checkBytes(bytes, desc, `${this.name}:${tag}`);
      await this.push(desc, Readable.from([bytes]), options);
    }
    return this.#updateIndex(desc, tag);
  }

  /**
   * Lists an image in index.json without a tag (one copied to `oci:DIR@DIGEST`), unless it is
   * listed already: the spec's readers and garbage collectors (umoci gc) see only what it lists.
   */
  async list(desc: Descriptor): Promise<void> {
    return this.#updateIndex(desc, undefined);
  }

  #updateIndex(desc: Descriptor, tag: string | undefined): Promise<void> {
    const run = this.#indexLock.then(() => withLockFile(this.#lockPath, () => this.#writeEntry(desc, tag)));
    this.#indexLock = run.catch(() => undefined);
    return run;
  }

  async #writeEntry(desc: Descriptor, tag: string | undefined): Promise<void> {
    if (!(await this.exists(desc))) {
      const what = tag === undefined ? 'list' : `tag ${tag}`;
      throw new CkptError('NOT_FOUND', `cannot ${what}: blob ${desc.digest} is not in the layout`, { subject: this.name });
    }
    const index = await this.readIndex();
    if (tag === undefined && index.manifests.some((m) => m.digest === desc.digest)) return;
    const annotations = tag === undefined ? desc.annotations : { ...desc.annotations, [Annotation.refName]: tag };
    const entry: Descriptor = {
      mediaType: desc.mediaType,
      digest: desc.digest,
      size: desc.size,
      ...(desc.platform ? { platform: desc.platform } : {}),
      ...(desc.artifactType ? { artifactType: desc.artifactType } : {}),
      ...(annotations ? { annotations } : {}),
    };
    const manifests = index.manifests.filter((m) => tag === undefined || m.annotations?.[Annotation.refName] !== tag);
    manifests.push(entry);
    const path = join(this.dir, INDEX_FILE);
    const temp = join(this.dir, `.${INDEX_FILE}.${ownedName()}`);
    try {
      await writeFile(temp, JSON.stringify({ ...index, manifests }));
      await rename(temp, path);
    } catch (err) {
      await rm(temp, { force: true });
      throw fromSystemError(err, path, true);
    }
  }

  /** The tags in index.json, in order. */
  async tags(): Promise<string[]> {
    const index = await this.readIndex();
    return index.manifests.flatMap((m) => m.annotations?.[Annotation.refName] ?? []);
  }
}

function withoutRefName(desc: Descriptor): Descriptor {
  if (!desc.annotations?.[Annotation.refName]) return desc;
  const { annotations, ...bare } = desc;
  const rest = Object.fromEntries(Object.entries(annotations).filter(([key]) => key !== Annotation.refName));
  // No `annotations: undefined` key: a descriptor without annotations has none.
  return Object.keys(rest).length > 0 ? { ...bare, annotations: rest } : bare;
}

/**
 * Creates a blob's temporary file in the ingest area. Another process writing to the same layout
 * removes the area when its last write ends, which may fall between our mkdir and our open: then
 * the area is made again.
 */
async function createTemp(dir: string, path: string): Promise<WriteStream> {
  return inVanishingDir(dir, async () => (await open(path, 'wx', 0o644)).createWriteStream());
}

/**
 * Removes a layout a failed build made (`keepDir`: empties it, for a directory that existed empty),
 * unless another process has it open for writing, has tagged into it or is writing a blob to it.
 * It looks under index.json.lock, which every process takes to mark a layout as in use or to tag
 * it; the layout is moved aside before it is deleted, so the lock is held for a rename only. A
 * layout half made, or whose index cannot be read, is left alone.
 * `modeBack`: the mode an emptied directory gets back.
 */
export async function removeUnusedLayout(dir: string, keepDir: boolean, modeBack?: number): Promise<void> {
  if ((await layoutState(dir).catch(() => 'other')) !== 'layout') return;
  const used = async () =>
    (await hasUsers(dir)) || (await stat(join(dir, INGEST_DIR)).then(() => true, () => false)) || (await tagCount(dir)) !== 0;
  // A mount point, say, stays: what it holds goes aside inside it, where nothing looks.
  const name = `${REMOVED_PREFIX}${ownedName()}`;
  const aside = keepDir ? join(dir, name) : join(dirname(dir), `.${basename(dir)}${name}`);
  let moved = false;
  const moveAside = async (): Promise<void> => {
    if (await used()) return;
    if (keepDir) {
      await mkdir(aside);
      for (const name of await readdir(dir)) if (!transient(name)) await rename(join(dir, name), join(aside, name));
      // Under the lock: a process making a layout here after it makes the directory private again.
      if (modeBack !== undefined) await chmod(dir, modeBack);
    } else {
      await rename(dir, aside);
    }
    moved = true;
  };
  try {
    await withLockFile(join(dir, LOCK_FILE), moveAside);
  } catch (err) {
    // A full disk has no room for the lock's few bytes, and what fills it is likely this layout's
    // blobs: it goes unlocked, unless another process holds the lock (it is opening or tagging it).
    if (!isOutOfSpace(err)) throw err;
    if (await stat(join(dir, LOCK_FILE)).then(() => false, () => true)) await moveAside();
  }
  if (moved) await rm(aside, { recursive: true, force: true });
}

function isOutOfSpace(err: unknown): boolean {
  const code = ((err instanceof CkptError ? err.cause : err) as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

/**
 * Deletes what a cleanup moved aside from the layout at `dir` and never deleted, its process having
 * died on the way (a second Ctrl-C): a whole layout's blobs, which nothing else would find; and the
 * blobs a killed process was writing. What a running process left, or a name that does not say who
 * did, is left alone. Best effort.
 */
async function removeLeftovers(dir: string): Promise<void> {
  const places: [string, string][] = [
    [dirname(dir), `.${basename(dir)}${REMOVED_PREFIX}`],
    [dir, REMOVED_PREFIX],
    // Blobs a killed process was writing, the lock it was making, and its mark as a user.
    [join(dir, INGEST_DIR), ''],
    [dir, `${LOCK_FILE}.`],
    [join(dir, USERS_DIR), ''],
    // The index.json (or oci-layout) it was writing, and the skeleton of a layout it was making.
    [dir, `.${INDEX_FILE}.`],
    [dir, `.${LAYOUT_FILE}.`],
    [dirname(dir), `.${basename(dir)}.`],
  ];
  // Only names of exactly our making: a sibling layout called `<name>.removed.x` keeps its own.
  for (const [where, prefix] of places) await removeOrphans(where, prefix);
  // An ingest area left empty goes, or the layout would look in use (removeUnusedLayout) for good.
  await rmdir(join(dir, INGEST_DIR)).catch(() => undefined);
}

/** How many manifests index.json lists; 0 for an empty file (older versions wrote it in place), undefined when unreadable. */
async function tagCount(dir: string): Promise<number | undefined> {
  try {
    const bytes = await readFile(join(dir, INDEX_FILE));
    return bytes.length === 0 ? 0 : IndexSchema.parse(JSON.parse(bytes.toString('utf8'))).manifests.length;
  } catch {
    return undefined;
  }
}

/**
 * Writes a new layout's skeleton. A missing directory is made beside it and renamed into place, so
 * another process creating the same layout at once never sees it half made and either one's copy
 * serves both; an existing empty directory (a mount point, say) is filled in place. Either is made
 * private (0700), as a pull's directory is: its blobs hold a process's memory, which Podman exports
 * as a 0600 archive.
 */
async function createLayout(dir: string, state: 'missing' | 'empty'): Promise<void> {
  const fill = async (into: string) => {
    // Filled in place, the directory may be another process's half-made skeleton.
    await makeDirectories(join(into, 'blobs', 'sha256'));
    const files = { [INDEX_FILE]: { schemaVersion: 2, mediaType: MediaType.imageIndex, manifests: [] }, [LAYOUT_FILE]: { imageLayoutVersion: '1.0.0' } };
    for (const [name, content] of Object.entries(files)) {
      // Never over a file another process wrote (its index may already hold a tag), never seen empty.
      await createWhole(join(into, name), JSON.stringify(content), join(into, `.${name}.${ownedName()}`));
    }
  };
  if (state === 'empty') {
    await fill(dir);
    // Once filled, before any blob is written: a failed command emptying this directory at once
    // may have given it its old mode back meanwhile (removeUnusedLayout).
    await chmod(dir, PRIVATE_DIR);
    return;
  }
  await makeDirectories(dirname(dir));
  const temp = join(dirname(dir), `.${basename(dir)}.${ownedName()}`);
  try {
    await mkdir(temp, { mode: PRIVATE_DIR });
    await fill(temp);
    await rename(temp, dir);
  } catch (err) {
    await rm(temp, { recursive: true, force: true });
    const code = (err as NodeJS.ErrnoException).code;
    if ((code === 'ENOTEMPTY' || code === 'EEXIST') && (await layoutState(dir)) === 'layout') return;
    throw err;
  }
}

/**
 * mkdir -p, one level at a time: a recursive mkdir reports a read-only or full file system as
 * ENOENT, which would read as the layout removed meanwhile.
 */
async function makeDirectories(dir: string): Promise<void> {
  try {
    await mkdir(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return;
    if (code !== 'ENOENT' || dirname(dir) === dir) throw err;
    await makeDirectories(dirname(dir));
    await mkdir(dir).catch((again: NodeJS.ErrnoException) => {
      if (again.code !== 'EEXIST') throw again;
    });
  }
}

/** What a directory holds that does not make it a layout, or not one: locks, marks, files being written, leftovers being removed. */
function transient(name: string): boolean {
  return (
    name === LOCK_FILE ||
    // The takeover guard, and a lock, index.json or oci-layout written whole before it is linked or renamed into place.
    name.startsWith(`${LOCK_FILE}.`) ||
    name.startsWith(`.${INDEX_FILE}.`) ||
    name.startsWith(`.${LAYOUT_FILE}.`) ||
    name === USERS_DIR ||
    name.startsWith(REMOVED_PREFIX)
  );
}

/** Only what createLayout writes before oci-layout: blobs/, and an index.json with nothing tagged. */
async function isSkeleton(dir: string, entries: string[]): Promise<boolean> {
  if (!entries.every((name) => SKELETON.has(name))) return false;
  return !entries.includes(INDEX_FILE) || (await tagCount(dir)) === 0;
}

async function layoutState(dir: string): Promise<'missing' | 'empty' | 'partial' | 'layout' | 'other'> {
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return 'missing';
    if (code === 'ENOTDIR') return 'other';
    throw fromSystemError(err, `oci:${dir}`);
  }
  const lasting = entries.filter((name) => !transient(name));
  if (lasting.length === 0) return 'empty';
  // Another process filling this directory: not yet a layout, but to be filled, not refused.
  if (!lasting.includes(LAYOUT_FILE)) return (await isSkeleton(dir, lasting)) ? 'partial' : 'other';
  let bytes: Buffer;
  try {
    bytes = await readFile(join(dir, LAYOUT_FILE));
  } catch (err) {
    // Removed by a failed build's cleanup since it was listed: look again.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return layoutState(dir);
    throw fromSystemError(err, join(dir, LAYOUT_FILE));
  }
  const marker = parseJson(LayoutMarkerSchema, bytes, join(dir, LAYOUT_FILE), 'NOT_LAYOUT');
  if (!marker.imageLayoutVersion.startsWith('1.')) {
    throw new CkptError('NOT_LAYOUT', `unsupported imageLayoutVersion ${marker.imageLayoutVersion}`, { subject: `oci:${dir}` });
  }
  return 'layout';
}
