import { createHash } from 'node:crypto';
import { lstat, readdir, readlink, realpath } from 'node:fs/promises';
import { join } from 'node:path';
import type { CheckpointSource, SourceEntry, TreeEntry } from '../entry.js';
import { fromSystemError } from '../../errors.js';
import { fileStream } from '../../fs/file-stream.js';
import { assertSafeLink, notUtf8, utf8Name } from '../../tar/safety.js';

/**
 * An unpacked checkpoint directory or a raw `criu dump` directory. Entries come sorted by name,
 * depth first, so the same tree always gives the same layers.
 */
export class DirectorySource implements CheckpointSource {
  readonly kind = 'directory';

  constructor(readonly name: string) {}

  /** Every entry's path, size, times and inode: cheap next to reading the pages. */
  async fingerprint(): Promise<string> {
    const hash = createHash('sha256').update(await realpath(this.name));
    for await (const { entry } of this.entries()) {
      const info = await lstat(join(this.name, entry.path), { bigint: true });
      hash.update(`\n${entry.path} ${info.ino} ${info.size} ${info.mtimeNs} ${info.ctimeNs} ${info.mode} ${info.uid} ${info.gid}`);
    }
    return `dir ${hash.digest('hex')}`;
  }

  entries(signal?: AbortSignal): AsyncGenerator<SourceEntry> {
    return this.#walk('', signal);
  }

  async *#walk(rel: string, signal: AbortSignal | undefined): AsyncGenerator<SourceEntry> {
    const dir = join(this.name, rel);
    const names: string[] = [];
    try {
      // As bytes: a name that is not UTF-8 would come back changed, and then not be found.
      for (const bytes of await readdir(dir, { encoding: 'buffer' })) {
        const name = utf8Name(bytes);
        if (name === undefined) throw notUtf8(dir, bytes.toString('utf8'));
        names.push(name);
      }
    } catch (err) {
      throw fromSystemError(err, dir);
    }
    names.sort();
    for (const name of names) {
      signal?.throwIfAborted();
      const path = rel === '' ? name : `${rel}/${name}`;
      const full = join(this.name, path);
      const entry = await this.#entry(path, full);
      if (!entry) continue;
      if (entry.type === 'file') {
        // Exactly the size listed: a file that grows while it is read does not change the entry.
        const range = { start: 0, length: entry.size };
        yield { entry, open: () => fileStream(full, signal, range), region: { path: full, offset: 0 } };
      } else {
        yield { entry };
      }
      if (entry.type === 'directory') yield* this.#walk(path, signal);
    }
  }

  async #entry(path: string, full: string): Promise<TreeEntry | undefined> {
    let info;
    try {
      // BigIntStats.mtime truncates to the millisecond; Stats.mtime rounds, which would carry a file
      // written in the last half millisecond of a second into the next second of its tar header.
      info = await lstat(full, { bigint: true });
    } catch (err) {
      throw fromSystemError(err, full);
    }
    const base = { path, mode: Number(info.mode & 0o7777n), uid: Number(info.uid), gid: Number(info.gid), mtime: info.mtime, size: 0 };
    if (info.isDirectory()) return { ...base, type: 'directory' };
    if (info.isFile()) return { ...base, type: 'file', size: Number(info.size) };
    if (info.isSymbolicLink()) {
      // As bytes too: a target that is not UTF-8 would be written as another one.
      const target = await readlink(full, { encoding: 'buffer' });
      const linkname = utf8Name(target) ?? target.toString('utf8');
      assertSafeLink(path, linkname, 'symlink', this.name);
      return { ...base, type: 'symlink', linkname };
    }
    // Sockets and FIFOs left in a dump directory carry no checkpoint data.
    return undefined;
  }
}
