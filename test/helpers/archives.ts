import { createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { pack } from 'tar-stream';

export interface TarItem {
  name: string;
  type?: 'file' | 'directory' | 'symlink' | 'link' | 'character-device' | 'fifo';
  content?: string | Buffer;
  linkname?: string;
  mode?: number;
}

/** Writes a tar archive built entry by entry, hostile names included (tar-stream writes them as given). */
export async function writeTar(path: string, items: TarItem[]): Promise<void> {
  const archive = pack();
  const done = pipeline(archive as unknown as Readable, createWriteStream(path));
  for (const item of items) {
    const content = item.content === undefined ? undefined : Buffer.from(item.content);
    await new Promise<void>((ok, fail) => {
      const header = {
        name: item.name,
        type: item.type ?? 'file',
        linkname: item.linkname,
        mode: item.mode ?? (item.type === 'directory' ? 0o755 : 0o644),
        mtime: new Date('2026-11-27T12:00:00Z'),
        size: content?.length ?? 0,
      };
      const cb = (err?: Error | null) => (err ? fail(err) : ok());
      if (content) archive.entry(header, content, cb);
      else archive.entry(header, cb);
    });
  }
  archive.finalize();
  await done;
}
