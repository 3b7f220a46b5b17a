import { readFile, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { describe, expect, it } from 'vitest';
import { isCkptError } from '../../src/errors.js';
import { readTar } from '../../src/tar/read.js';
import { writeTar } from '../helpers/archives.js';
import { tempDir } from '../helpers/tree.js';

async function archive(items: Parameters<typeof writeTar>[1], cut?: number): Promise<Buffer> {
  const path = join(await tempDir(), 'a.tar');
  await writeTar(path, items);
  if (cut) await truncate(path, cut);
  return readFile(path);
}

describe('readTar', () => {
  it('yields checked entries with their content, and skips what is not read', async () => {
    const bytes = await archive([
      { name: './checkpoint/', type: 'directory' },
      { name: './checkpoint/a.img', content: 'aaaa' },
      { name: 'checkpoint/b.img', content: 'bbbbbb' },
    ]);
    const seen: string[] = [];
    for await (const { entry, open } of readTar(Readable.from([bytes]), 'a.tar')) {
      seen.push(`${entry.type}:${entry.path}`);
      if (entry.path.endsWith('b.img')) expect((await buffer(open?.() ?? Readable.from([]))).toString()).toBe('bbbbbb');
    }
    expect(seen).toEqual(['directory:checkpoint', 'file:checkpoint/a.img', 'file:checkpoint/b.img']);
  });

  it('an archive cut inside an entry fails the reader, even one opened late, and never hangs', async () => {
    const bytes = await archive([{ name: 'pages-1.img', content: Buffer.alloc(5000, 7) }], 1536);
    const read = async () => {
      for await (const { open } of readTar(Readable.from([bytes]), 'cut.tar')) {
        await new Promise((r) => setTimeout(r, 50));
        if (open) await buffer(open());
      }
    };
    const err = await read().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isCkptError(err, 'CORRUPT_ARCHIVE')).toBe(true);
    expect((err as Error).message).toMatch(/^cut\.tar: truncated or corrupt archive/);
  });

  it('refuses entry types a checkpoint never holds', async () => {
    const bytes = await archive([{ name: 'fifo', type: 'fifo' }]);
    const err = await (async () => {
      for await (const item of readTar(Readable.from([bytes]), 'f.tar')) void item;
    })().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isCkptError(err, 'UNSAFE_PATH')).toBe(true);
    expect((err as Error).message).toContain('is a fifo');
  });
});
