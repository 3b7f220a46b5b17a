import { pack } from 'tar-stream';
import { describe, expect, it } from 'vitest';
import type { TreeEntry } from '../../src/checkpoint/entry.js';
import { tarHeader } from '../../src/tar/header.js';
import { tarPadding, ustarFileHeader } from '../../src/tar/ustar.js';

/** The header block tar-stream writes for `entry`, which every other layer of ckpt goes through. */
async function tarStreamHeader(entry: TreeEntry): Promise<Buffer> {
  const p = pack();
  const header = new Promise<Buffer>((resolve) => p.once('data', (block) => resolve(block as Buffer)));
  // The header goes out before any content, which is never written here.
  p.entry(tarHeader(entry));
  const block = await header;
  p.destroy();
  return block;
}

const base: TreeEntry = {
  path: 'checkpoint/pages-1.img',
  type: 'file',
  mode: 0o600,
  uid: 0,
  gid: 0,
  mtime: new Date('2026-11-27T13:34:00.789Z'),
  size: 4096,
};

describe('ustar headers of page files', () => {
  const cases: Array<[string, Partial<TreeEntry>]> = [
    ['a page file', {}],
    ['owners with names', { uid: 1000, gid: 100, uname: 'app', gname: 'users' }],
    ['no mode bits', { mode: 0 }],
    ['setuid and sticky bits', { mode: 0o7755 }],
    ['a 100-byte path', { path: `checkpoint/${'p'.repeat(89)}` }],
    ['an empty file', { size: 0 }],
    ['a size not a multiple of 512', { size: 1_000_003 }],
    ['the largest octal size (8 GiB - 1)', { size: 8 * 1024 ** 3 - 1 }],
    ['a time before 1970 rounds like tar-stream', { mtime: new Date(1500) }],
    ['the largest ids tar-stream writes', { uid: 0o777777, gid: 0o777777 }],
  ];
  for (const [name, change] of cases) {
    it(`is byte for byte tar-stream's for ${name}`, async () => {
      const entry = { ...base, ...change };
      expect(ustarFileHeader(entry)).toEqual(await tarStreamHeader(entry));
    });
  }

  const refused: Array<[string, Partial<TreeEntry>]> = [
    ['a path over 100 bytes (needs PAX)', { path: `checkpoint/${'p'.repeat(91)}` }],
    ['a non-ASCII path', { path: 'checkpoint/pagés-1.img' }],
    ['a size of 8 GiB (base-256)', { size: 8 * 1024 ** 3 }],
    ['an id tar-stream would clamp', { uid: 0o1000000 }],
    ['a user name over 32 bytes', { uname: 'u'.repeat(33) }],
    ['a time before 1970', { mtime: new Date(-5000) }],
    ['a directory', { type: 'directory', size: 0 }],
  ];
  for (const [name, change] of refused) {
    it(`leaves ${name} to tar-stream`, () => {
      expect(ustarFileHeader({ ...base, ...change })).toBeUndefined();
    });
  }

  it('keeps a mode of 0000, for files and directories alike', async () => {
    const modeField = (block: Buffer | undefined) => block?.toString('latin1', 100, 107).trim();
    expect(modeField(ustarFileHeader({ ...base, mode: 0 }))).toBe('000000');
    expect(modeField(await tarStreamHeader({ ...base, path: 'dir', type: 'directory', size: 0, mode: 0 }))).toBe('000000');
  });

  it('pads content to whole blocks', () => {
    expect([0, 1, 511, 512, 513].map(tarPadding)).toEqual([0, 511, 1, 0, 511]);
  });
});
