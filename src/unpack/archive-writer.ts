import { once, setMaxListeners } from 'node:events';
import { createWriteStream } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { pack, type Pack } from 'tar-stream';
import type { TreeEntry } from '../checkpoint/entry.js';
import { CkptError } from '../errors.js';
import type { TarEntry } from '../tar/extract.js';
import { tarHeader } from '../tar/header.js';
import { corruptArchive } from '../tar/read.js';
import { TAR_END, tarPadding, ustarFileHeader } from '../tar/ustar.js';
import { ArchiveTree } from './archive-tree.js';
import { PRIVATE_FILE } from '../fs/private-modes.js';

/** Adds one entry (with its content for a file) to the archive, named `subject` in messages. */
export type AddEntry = (source: TarEntry, subject: string) => Promise<void>;

export interface ArchiveStats {
  entries: number;
  bytes: number;
}

/**
 * Writes an uncompressed tar to the new file `path` (mode 0600) from the entries `fill` adds, with
 * back-pressure all the way to the disk, and syncs it before returning so that the rename that
 * follows publishes complete bytes. A write failure (a full disk) stops `fill` through its signal
 * and is the error reported.
 */
export async function writeArchive(
  path: string,
  exclusive: boolean,
  signal: AbortSignal | undefined,
  fill: (add: AddEntry, signal: AbortSignal) => Promise<void>,
): Promise<ArchiveStats> {
  const stop = new AbortController();
  const combined = signal ? AbortSignal.any([signal, stop.signal]) : stop.signal;
  // Every request and stream of the work listens to it; many at once are normal, not a leak.
  setMaxListeners(256, combined);
  const file = new ArchiveFile(path, await open(path, 'wx', PRIVATE_FILE), stop);
  const tree = new ArchiveTree(exclusive);
  const stats: ArchiveStats = { entries: 0, bytes: 0 };
  const add: AddEntry = async (source, subject) => {
    const admitted = tree.admit(source.entry, subject);
    if (!admitted) return;
    await file.add(admitted, source, subject, combined);
    stats.entries++;
    stats.bytes += admitted.size;
  };
  try {
    await fill(add, combined);
    await tree.checkLinks();
    await file.end();
  } catch (err) {
    await file.abandon();
    throw file.writeFailure ?? err;
  } finally {
    await file.close();
  }
  return stats;
}

/**
 * The archive as it is written, by position. Entries go through tar-stream in runs; a file whose
 * producer writes its content itself (a layer's worker thread) gets its header from
 * ustarFileHeader() and its content straight at its place, never passing through this thread.
 */
class ArchiveFile {
  readonly #path: string;
  readonly #handle: FileHandle;
  readonly #stop: AbortController;
  #position = 0;
  /** The run of entries going through tar-stream, and its writing into the file. */
  #run: { tar: Pack; written: Promise<void> } | undefined;
  /** Only the file's own errors (a full disk) are write failures; a run also fails when its entries do. */
  writeFailure: unknown;

  constructor(path: string, handle: FileHandle, stop: AbortController) {
    this.#path = path;
    this.#handle = handle;
    this.#stop = stop;
  }

  async add(entry: TreeEntry, source: TarEntry, subject: string, signal: AbortSignal): Promise<void> {
    const header = source.writeInto ? ustarFileHeader(entry) : undefined;
    if (!source.writeInto || !header) {
      await addEntry(this.#tar(), entry, source.open?.(), subject, signal);
      return;
    }
    await this.#endRun();
    await this.#write(header);
    const written = await source.writeInto(this.#handle.fd, this.#position);
    if (written !== entry.size) throw truncated(entry, written, subject);
    this.#position += written;
    await this.#write(TAR_END.subarray(0, tarPadding(written)));
  }

  /** Ends the archive with its two zero blocks, and syncs it. */
  async end(): Promise<void> {
    await this.#endRun();
    await this.#write(TAR_END);
    await this.#handle.sync();
  }

  /** Stops a run after a failure, once its writing has stopped. */
  async abandon(): Promise<void> {
    const run = this.#run;
    this.#run = undefined;
    run?.tar.destroy();
    await run?.written.catch(() => undefined);
  }

  async close(): Promise<void> {
    await this.#handle.close();
  }

  #tar(): Pack {
    if (this.#run) return this.#run.tar;
    const tar = pack();
    // A descriptor of its own, which the stream closes however it ends.
    const out = createWriteStream(this.#path, { flags: 'r+', start: this.#position });
    // The stream also fails when the run is stopped; a failed system call is the file's own failure.
    out.once('error', (err: NodeJS.ErrnoException) => {
      if (err.syscall) this.#failed(err);
    });
    const written = pipeline(Readable.from(tar), out).then(() => {
      this.#position += out.bytesWritten;
    });
    written.catch(() => undefined);
    this.#run = { tar, written };
    return tar;
  }

  /** Ends the current run without the end blocks finalize() would write, once all of it is in the file. */
  async #endRun(): Promise<void> {
    const run = this.#run;
    if (!run) return;
    this.#run = undefined;
    run.tar.push(null);
    await run.written;
  }

  async #write(bytes: Uint8Array): Promise<void> {
    try {
      for (let done = 0; done < bytes.length; ) {
        done += (await this.#handle.write(bytes, done, bytes.length - done, this.#position + done)).bytesWritten;
      }
    } catch (err) {
      this.#failed(err);
      throw err;
    }
    this.#position += bytes.length;
  }

  #failed(err: unknown): void {
    this.writeFailure ??= err;
    this.#stop.abort(err);
  }
}

async function addEntry(
  tar: Pack,
  entry: TreeEntry,
  content: AsyncIterable<Buffer> | undefined,
  subject: string,
  signal: AbortSignal,
): Promise<void> {
  const header = tarHeader(entry);

  await new Promise<void>((ok, fail) => {
    const sink = tar.entry(header, (err) => (err ? fail(err) : ok()));
    // A sink destroyed below emits its error; the promise already carries it.
    sink.on('error', fail);
    if (entry.type !== 'file') return;
    (async () => {
      let bytes = 0;
      for await (const chunk of content ?? []) {
        bytes += chunk.length;
        if (!sink.write(chunk)) await once(sink, 'drain', { signal });
      }
      if (bytes !== entry.size) throw truncated(entry, bytes, subject);
      sink.end(null); // streamx's typings want an argument; null writes nothing
    })().catch((err: unknown) => {
      // What is not ours came out of the entry's stream: the layer broke (truncated, undecodable).
      const cause = err instanceof CkptError ? err : corruptArchive(err, subject);
      sink.destroy(cause as Error);
      fail(cause);
    });
  });
}

function truncated(entry: TreeEntry, bytes: number, subject: string): CkptError {
  return new CkptError('CORRUPT_ARCHIVE', `entry ${JSON.stringify(entry.path)} is truncated (${bytes} of ${entry.size} bytes)`, { subject });
}
