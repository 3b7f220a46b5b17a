import { once, setMaxListeners } from 'node:events';
import { createWriteStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { pack, type Pack } from 'tar-stream';
import { tarHeader } from '../tar/header.js';
import type { TreeEntry } from '../checkpoint/entry.js';
import { CkptError } from '../errors.js';
import { corruptArchive } from '../tar/read.js';
import { ArchiveTree } from './archive-tree.js';

/** Adds one entry (its content for a file) to the archive, named `subject` in messages. */
export type AddEntry = (entry: TreeEntry, content: AsyncIterable<Buffer> | undefined, subject: string) => Promise<void>;

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
  const tar = pack();
  // Only the file's own errors (a full disk) are write failures; the pack stream fails when `fill`
  // does, and then fill's error is the one to report.
  let writeFailure: unknown;
  const file = createWriteStream(path, { flags: 'wx', mode: 0o600 });
  file.once('error', (err) => {
    writeFailure = err;
    stop.abort(err);
  });
  let pipeFailure: unknown;
  const written = pipeline(Readable.from(tar), file).catch((err: unknown) => {
    pipeFailure = err;
  });
  const tree = new ArchiveTree(exclusive);
  const stats: ArchiveStats = { entries: 0, bytes: 0 };
  const add: AddEntry = async (entry, content, subject) => {
    const admitted = tree.admit(entry, subject);
    if (!admitted) return;
    await addEntry(tar, admitted, content, subject, combined);
    stats.entries++;
    stats.bytes += admitted.size;
  };
  try {
    await fill(add, combined);
    tar.finalize();
  } catch (err) {
    tar.destroy();
    await written;
    throw writeFailure ?? err;
  }
  await written;
  if (writeFailure ?? pipeFailure) throw writeFailure ?? pipeFailure;
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
  return stats;
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
      if (bytes !== entry.size) {
        throw new CkptError('CORRUPT_ARCHIVE', `entry ${JSON.stringify(entry.path)} is truncated (${bytes} of ${entry.size} bytes)`, {
          subject,
        });
      }
      sink.end(null); // streamx's typings want an argument; null writes nothing
    })().catch((err: unknown) => {
      // What is not ours came out of the entry's stream: the layer broke (truncated, undecodable).
      const cause = err instanceof CkptError ? err : corruptArchive(err, subject);
      sink.destroy(cause as Error);
      fail(cause);
    });
  });
}
