import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OciLayout } from '../../src/layout/store.js';
import { unpackToArchive } from '../../src/unpack/archive.js';
import { unpackToDirectory } from '../../src/unpack/directory.js';
import { THREADED_MIN_SIZE } from '../../src/unpack/plan.js';
import { buildImage, FIXTURE_LAYOUT, FIXTURE_TAG } from './helpers.js';
import { rejection as failure } from '../helpers/rejection.js';
import { mountTmpfs, type Tmpfs } from '../helpers/tmpfs.js';

/** A real full disk: a 256 KiB tmpfs, far smaller than the fixture checkpoint. Needs root. */
let tmpfs: Tmpfs | undefined;
let disk: string | undefined;

beforeAll(async () => {
  tmpfs = await mountTmpfs('size=256k');
  disk = tmpfs?.dir;
});

afterAll(async () => {
  await tmpfs?.unmount();
});

describe('a full disk during a pull', () => {
  it('to a directory: WRITE_FAILED naming the destination, nothing left', async (ctx) => {
    if (!disk) return ctx.skip();
    const layout = await OciLayout.open(FIXTURE_LAYOUT);
    const out = join(disk, 'out');
    const err = await failure(unpackToDirectory(layout, await layout.resolve(FIXTURE_TAG), out));
    expect(err.code).toBe('WRITE_FAILED');
    expect(err.message).toContain('no space left on device');
    expect(err.subject?.startsWith(out)).toBe(true);
    expect(await readdir(disk)).toEqual([]);
  });

  it('to an archive: WRITE_FAILED naming the destination, nothing left', async (ctx) => {
    if (!disk) return ctx.skip();
    const layout = await OciLayout.open(FIXTURE_LAYOUT);
    const out = join(disk, 'out.tar');
    const err = await failure(unpackToArchive(layout, await layout.resolve(FIXTURE_TAG), out));
    expect(err.code).toBe('WRITE_FAILED');
    expect(err.message).toContain('no space left on device');
    expect(err.subject).toBe(out);
    expect(await readdir(disk)).toEqual([]);
  });

  it('from a zstd layer written by a worker thread: the same, to a directory and to an archive', async (ctx) => {
    if (!disk) return ctx.skip();
    const layoutDir = await mkdtemp(join(tmpdir(), 'ckpt-full-disk-layout-'));
    try {
      const pages = { name: 'pages-1.img', body: randomBytes(THREADED_MIN_SIZE + 4096) };
      const { layout, manifestDesc } = await buildImage(layoutDir, [{ compression: 'zstd', entries: [pages] }]);
      for (const [out, subject] of [
        [join(disk, 'out'), join(disk, 'out', 'pages-1.img')],
        [join(disk, 'out.tar'), join(disk, 'out.tar')],
      ] as const) {
        const unpack = out.endsWith('.tar') ? unpackToArchive : unpackToDirectory;
        const err = await failure(unpack(layout, manifestDesc, out));
        expect(err.code).toBe('WRITE_FAILED');
        expect(err.message).toContain('no space left on device');
        expect(err.subject).toBe(subject);
        expect(await readdir(disk)).toEqual([]);
      }
    } finally {
      await rm(layoutDir, { recursive: true, force: true });
    }
  });
});
