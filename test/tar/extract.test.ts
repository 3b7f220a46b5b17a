import { link, lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { pack } from 'tar-stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DirectoryAttributes, extractTar, MAX_DEPTH } from '../../src/tar/extract.js';
import { type TarSpec, tarOf } from './build-tar.js';
import { rejection } from '../helpers/rejection.js';

async function extract(entries: TarSpec[], options: Partial<Parameters<typeof extractTar>[2]> = {}) {
  return extractTar(Readable.from([await tarOf(entries)]), dest, { subject: 'layer.tar', ...options });
}

let work: string;
let dest: string;
let outside: string;

beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'ckpt-extract-'));
  dest = join(work, 'dest');
  outside = join(work, 'outside');
  await mkdir(dest);
  await mkdir(outside);
  await writeFile(join(outside, 'secret'), 'untouched');
});

afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

async function outsideIsUntouched(): Promise<void> {
  expect(await readdir(outside)).toEqual(['secret']);
  expect(await readFile(join(outside, 'secret'), 'utf8')).toBe('untouched');
}

describe('extractTar refuses hostile archives', () => {
  it('dot-dot traversal', async () => {
    const err = await rejection(extract([{ name: '../outside/evil', body: 'x' }]));
    expect(err.code).toBe('UNSAFE_PATH');
    expect(err.message).toContain('../outside/evil');
    await outsideIsUntouched();
  });

  it('dot-dot traversal in the middle of a path', async () => {
    const err = await rejection(extract([{ name: 'a/../../outside/evil', body: 'x' }]));
    expect(err.code).toBe('UNSAFE_PATH');
    await outsideIsUntouched();
  });

  it('absolute path', async () => {
    const err = await rejection(extract([{ name: join(outside, 'evil'), body: 'x' }]));
    expect(err.code).toBe('UNSAFE_PATH');
    await outsideIsUntouched();
  });

  it('symlink escape then write through it (absolute target)', async () => {
    const err = await rejection(
      extract([
        { name: 'a', type: 'symlink', linkname: outside },
        { name: 'a/secret', body: 'owned' },
      ]),
    );
    expect(err.code).toBe('UNSAFE_PATH');
    await outsideIsUntouched();
    expect(await readdir(dest)).toEqual([]);
  });

  it('symlink escape then write through it (relative chain that looks safe on paper)', async () => {
    // a/b -> .. points at the root, so a/b/c -> ../../outside is really root/../outside.
    const err = await rejection(
      extract([
        { name: 'a/', type: 'directory' },
        { name: 'a/b', type: 'symlink', linkname: '..' },
        { name: 'a/b/c', type: 'symlink', linkname: '../../outside' },
        { name: 'a/b/c/secret', body: 'owned' },
      ]),
    );
    expect(err.code).toBe('UNSAFE_PATH');
    expect(err.message).toContain('symbolic link "a/b"');
    await outsideIsUntouched();
  });

  it('write through a symlink planted before (by an earlier layer)', async () => {
    await symlink(outside, join(dest, 'planted'));
    const err = await rejection(extract([{ name: 'planted/secret', body: 'owned' }]));
    expect(err.code).toBe('UNSAFE_PATH');
    await outsideIsUntouched();
  });

  it('write through a symlink to inside the tree', async () => {
    const err = await rejection(
      extract([
        { name: 'here', type: 'symlink', linkname: '.' },
        { name: 'here/file', body: 'x' },
      ]),
    );
    expect(err.code).toBe('UNSAFE_PATH');
  });

  it('hardlink to outside', async () => {
    const err = await rejection(extract([{ name: 'h', type: 'link', linkname: '../outside/secret' }]));
    expect(err.code).toBe('UNSAFE_PATH');
    await expect(lstat(join(dest, 'h'))).rejects.toThrow();
  });

  it('hardlink to outside through a planted symlink', async () => {
    await symlink(outside, join(dest, 'planted'));
    const err = await rejection(extract([{ name: 'h', type: 'link', linkname: 'planted/secret' }]));
    expect(err.code).toBe('UNSAFE_PATH');
    await expect(lstat(join(dest, 'h'))).rejects.toThrow();
  });

  it('hardlink to a file that is not in the tree', async () => {
    const err = await rejection(extract([{ name: 'h', type: 'link', linkname: 'missing' }]));
    expect(err.code).toBe('CORRUPT_ARCHIVE');
  });

  it('hardlink to a symbolic link of the tree (refused, as in a .tar output)', async () => {
    const err = await rejection(extract([{ name: 'l', type: 'symlink', linkname: 'a' }, { name: 'h', type: 'link', linkname: 'l' }]));
    expect(err.code).toBe('CORRUPT_ARCHIVE');
    await expect(lstat(join(dest, 'h'))).rejects.toThrow();
  });

  it.each([
    ['character-device', { type: 'character-device', devmajor: 1, devminor: 3 }],
    ['block-device', { type: 'block-device', devmajor: 8, devminor: 0 }],
    ['fifo', { type: 'fifo' }],
  ] as const)('device node or fifo (%s)', async (_kind, header) => {
    const err = await rejection(extract([{ name: 'dev/node', ...header }]));
    expect(err.code).toBe('UNSAFE_PATH');
    expect(err.message).toContain('dev/node');
    await expect(lstat(join(dest, 'dev/node'))).rejects.toThrow();
  });

  it('overwrite of a hard-linked file (link planted before)', async () => {
    await link(join(outside, 'secret'), join(dest, 'victim'));
    await extract([{ name: 'victim', body: 'new content' }]);
    expect(await readFile(join(dest, 'victim'), 'utf8')).toBe('new content');
    await outsideIsUntouched();
  });

  it('overwrite of a hard-linked file (link made by the archive)', async () => {
    await extract([
      { name: 'a', body: 'original' },
      { name: 'b', type: 'link', linkname: 'a' },
      { name: 'b', body: 'replaced' },
    ]);
    expect(await readFile(join(dest, 'a'), 'utf8')).toBe('original');
    expect(await readFile(join(dest, 'b'), 'utf8')).toBe('replaced');
  });

  it('deep path', async () => {
    const name = `${Array.from({ length: MAX_DEPTH + 1 }, () => 'd').join('/')}/f`;
    const err = await rejection(extract([{ name, body: 'x' }]));
    expect(err.code).toBe('UNSAFE_PATH');
    expect(err.message).toContain('deep');
    expect(await readdir(dest)).toEqual([]);
  });

  it('whiteout of dot-dot', async () => {
    const err = await rejection(extract([{ name: 'a/.wh...', body: '' }]));
    expect(err.code).toBe('UNSAFE_PATH');
    await outsideIsUntouched();
  });

  it('whiteout through a planted symlink', async () => {
    await symlink(outside, join(dest, 'planted'));
    const err = await rejection(extract([{ name: 'planted/.wh.secret', body: '' }]));
    expect(err.code).toBe('UNSAFE_PATH');
    await outsideIsUntouched();
  });

  it('truncated archive', async () => {
    const whole = await tarOf([{ name: 'f', body: 'x'.repeat(5000) }]);
    const err = await rejection(extractTar(Readable.from([whole.subarray(0, 1500)]), dest, { subject: 'layer.tar' }));
    expect(err.code).toBe('CORRUPT_ARCHIVE');
  });
});

describe('extractTar keeps what a checkpoint needs', () => {
  it('keeps file and directory modes and mtimes, directories last', async () => {
    const t1 = new Date('2021-03-04T05:06:07Z');
    const t2 = new Date('2022-01-02T03:04:05Z');
    const stats = await extract([
      { name: 'checkpoint/', type: 'directory', mode: 0o600, mtime: t1 },
      { name: 'checkpoint/pages-1.img', mode: 0o640, mtime: t2, body: 'pages' },
      { name: 'ro/', type: 'directory', mode: 0o555, mtime: t1 },
      { name: 'ro/inside', mode: 0o400, mtime: t1, body: 'inside a read-only directory' },
      { name: 'exec', mode: 0o755, mtime: t2, body: '#!/bin/sh' },
      { name: 'link', type: 'symlink', linkname: 'exec', mtime: t1 },
      { name: 'hard', type: 'link', linkname: 'exec' },
    ]);
    expect(stats).toMatchObject({ files: 3, directories: 2, symlinks: 1, hardlinks: 1, bytes: 5 + 28 + 9 });

    const dir = await stat(join(dest, 'checkpoint'));
    expect(dir.mode & 0o7777).toBe(0o600);
    expect(dir.mtime).toEqual(t1);
    const pages = await stat(join(dest, 'checkpoint/pages-1.img'));
    expect(pages.mode & 0o7777).toBe(0o640);
    expect(pages.mtime).toEqual(t2);
    expect(await readFile(join(dest, 'checkpoint/pages-1.img'), 'utf8')).toBe('pages');
    expect((await stat(join(dest, 'ro'))).mode & 0o7777).toBe(0o555);
    expect((await stat(join(dest, 'ro/inside'))).mode & 0o7777).toBe(0o400);
    expect((await stat(join(dest, 'exec'))).mode & 0o7777).toBe(0o755);
    expect(await readlink(join(dest, 'link'))).toBe('exec');
    expect((await lstat(join(dest, 'link'))).mtime).toEqual(t1);
    expect((await stat(join(dest, 'hard'))).ino).toBe((await stat(join(dest, 'exec'))).ino);
  });

  it('keeps owners when running as root', async () => {
    if (process.getuid?.() !== 0) return;
    await extract([
      { name: 'd/', type: 'directory', uid: 1234, gid: 5678 },
      { name: 'd/f', uid: 4321, gid: 8765, body: 'x' },
    ]);
    expect(await stat(join(dest, 'd'))).toMatchObject({ uid: 1234, gid: 5678 });
    expect(await stat(join(dest, 'd/f'))).toMatchObject({ uid: 4321, gid: 8765 });
  });

  it('writes large files through, chunk by chunk', async () => {
    const big = Buffer.alloc(5 << 20, 7);
    const p = pack();
    const out = new PassThrough();
    p.pipe(out);
    p.entry({ name: 'big', size: big.length }, big);
    p.finalize();
    const stats = await extractTar(out, dest, { subject: 'layer.tar' });
    expect(stats.bytes).toBe(big.length);
    expect((await readFile(join(dest, 'big'))).equals(big)).toBe(true);
  });

  it('stops when aborted', async () => {
    const controller = new AbortController();
    controller.abort();
    const err = await rejection(extract([{ name: 'f', body: 'x' }], { signal: controller.signal }));
    expect(err.code).toBe('ABORTED');
  });
});

describe('extractTar applies OCI layer semantics', () => {
  it('a later entry replaces an earlier file, directory or link', async () => {
    await extract([
      { name: 'was-dir/', type: 'directory' },
      { name: 'was-dir/child', body: 'x' },
      { name: 'was-file', body: 'x' },
      { name: 'was-link', type: 'symlink', linkname: 'was-file' },
    ]);
    await extract([
      { name: 'was-dir', body: 'now a file' },
      { name: 'was-file/', type: 'directory' },
      { name: 'was-file/child', body: 'y' },
      { name: 'was-link', body: 'now a file' },
    ]);
    expect(await readFile(join(dest, 'was-dir'), 'utf8')).toBe('now a file');
    expect(await readFile(join(dest, 'was-file/child'), 'utf8')).toBe('y');
    expect((await lstat(join(dest, 'was-link'))).isFile()).toBe(true);
  });

  it('whiteouts remove what lower layers hold, opaque directories hide it', async () => {
    await extract([
      { name: 'gone', body: 'x' },
      { name: 'gone-dir/', type: 'directory' },
      { name: 'gone-dir/f', body: 'x' },
      { name: 'opaque/', type: 'directory' },
      { name: 'opaque/old', body: 'x' },
      { name: 'kept', body: 'x' },
    ]);
    const stats = await extract([
      { name: '.wh.gone', body: '' },
      { name: '.wh.gone-dir', body: '' },
      { name: 'opaque/', type: 'directory' },
      { name: 'opaque/new', body: 'y' },
      { name: 'opaque/.wh..wh..opq', body: '' },
      { name: '.wh.never-was', body: '' },
    ]);
    expect(stats.whiteouts).toBe(4);
    expect((await readdir(dest)).sort()).toEqual(['kept', 'opaque']);
    expect(await readdir(join(dest, 'opaque'))).toEqual(['new']);
  });

  it('a whiteout keeps what its own layer put in directories it did not list', async () => {
    await extract([
      { name: 'd/', type: 'directory' },
      { name: 'd/old', body: 'x' },
      { name: 'd/sub/', type: 'directory' },
      { name: 'd/sub/lower', body: 'x' },
      { name: 'e/gone/f', body: 'x' },
    ]);
    await extract([
      // d/sub and e/gone are never listed, only implied by the files below them.
      { name: 'd/sub/new', body: 'y' },
      { name: 'd/.wh..wh..opq', body: '' },
      { name: 'e/gone/g', body: 'y' },
      { name: 'e/.wh.gone', body: '' },
    ]);
    expect(await readdir(join(dest, 'd'))).toEqual(['sub']);
    // Opaque: what lower layers had inside d/sub is hidden too.
    expect(await readdir(join(dest, 'd/sub'))).toEqual(['new']);
    // Whited out below, written again above: only this layer's content.
    expect(await readdir(join(dest, 'e/gone'))).toEqual(['g']);
  });

  it('exclusive extractions into one tree merge directories and refuse any overlap', async () => {
    const directories = new DirectoryAttributes();
    await Promise.all([
      extract([{ name: 'checkpoint/', type: 'directory', mode: 0o700 }, { name: 'checkpoint/a', body: 'a' }], {
        exclusive: true,
        directories,
      }),
      extract([{ name: 'checkpoint/', type: 'directory', mode: 0o700 }, { name: 'checkpoint/b', body: 'b' }], {
        exclusive: true,
        directories,
      }),
    ]);
    await directories.apply(dest);
    expect((await readdir(join(dest, 'checkpoint'))).sort()).toEqual(['a', 'b']);

    const overlap = await rejection(extract([{ name: 'checkpoint/a', body: 'again' }], { exclusive: true }));
    expect(overlap.code).toBe('CORRUPT_ARCHIVE');
    expect(await readFile(join(dest, 'checkpoint/a'), 'utf8')).toBe('a');
    const whiteout = await rejection(extract([{ name: 'checkpoint/.wh.a', body: '' }], { exclusive: true }));
    expect(whiteout.code).toBe('CORRUPT_ARCHIVE');
  });

  it('the later layer gives a shared directory its attributes, whichever finishes first', async () => {
    const directories = new DirectoryAttributes();
    await extract([{ name: 'd/', type: 'directory', mode: 0o750 }], { exclusive: true, directories, position: 1 });
    await extract([{ name: 'd/', type: 'directory', mode: 0o700 }], { exclusive: true, directories, position: 0 });
    await directories.apply(dest);
    expect((await stat(join(dest, 'd'))).mode & 0o777).toBe(0o750);
  });
});
