import { chmod, cp, link, mkdir, mkdtemp, open, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { OciLayout } from '../../src/layout/store.js';
import { unpackToArchive } from '../../src/unpack/archive.js';
import { unpackToDirectory } from '../../src/unpack/directory.js';
import {
  buildImage,
  CHECKPOINT_ARTIFACT_TYPE,
  CHECKPOINT_LAYERS,
  FIXTURE_LAYER,
  FIXTURE_LAYOUT,
  FIXTURE_TAG,
  gnuTarExtract,
  gnuTarList,
  snapshot,
  type TestLayer,
} from './helpers.js';
import { leftByExited } from '../helpers/owned.js';
import { rejection as failure } from '../helpers/rejection.js';

let work: string;

beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'ckpt-unpack-tar-'));
});

afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

/** The outputs in the working directory, never a temporary sibling. */
async function outputs(): Promise<string[]> {
  return (await readdir(work)).filter((name) => name !== 'layout').sort();
}

/** Unpacks the same image to a directory and to an archive; the archive, extracted, must equal the directory. */
async function expectArchiveEqualsDirectory(layout: OciLayout, manifestDesc: Parameters<typeof unpackToArchive>[1]): Promise<string[]> {
  const archive = join(work, 'out.tar');
  const result = await unpackToArchive(layout, manifestDesc, archive);
  expect(result.path).toBe(archive);
  expect((await stat(archive)).mode & 0o777).toBe(0o600);

  const dir = join(work, 'dir');
  await unpackToDirectory(layout, manifestDesc, dir);
  const extracted = join(work, 'extracted');
  await mkdir(extracted);
  await gnuTarExtract(archive, extracted);
  expect(await snapshot(extracted)).toEqual(await snapshot(dir));
  expect(await outputs()).toEqual(['dir', 'extracted', 'out.tar']);
  return gnuTarList(archive);
}

describe('unpackToArchive', () => {
  it('writes the Podman fixture image as a kubelet-style archive equal to the directory output', async () => {
    const layout = await OciLayout.open(FIXTURE_LAYOUT);
    const names = await expectArchiveEqualsDirectory(layout, await layout.resolve(FIXTURE_TAG));
    // The checkpoint's files at the archive root, as `crictl checkpoint --export` writes them.
    expect(names).toContain('checkpoint/');
    expect(names).toContain('checkpoint/inventory.img');
    expect(names).toContain('config.dump');
    expect(names.filter((n) => n.startsWith('/') || n.startsWith('./') || n.includes('..'))).toEqual([]);
  });

  it('streams the non-overlapping layers of a ckpt image one after the other', async () => {
    const { layout, manifestDesc } = await buildImage(join(work, 'layout'), CHECKPOINT_LAYERS, {
      artifactType: CHECKPOINT_ARTIFACT_TYPE,
    });
    const names = await expectArchiveEqualsDirectory(layout, manifestDesc);
    expect(names).toContain('checkpoint/pages-1.img');
    expect(names).toContain('rootfs-diff.tar');
  });

  it('merges the layers of any other image before archiving them', async () => {
    const layers: TestLayer[] = [
      { entries: [{ name: 'keep', body: 'old' }, { name: 'gone', body: 'x' }, { name: 'dir/', type: 'directory' }, { name: 'dir/f', body: 'x' }] },
      { compression: 'none', entries: [{ name: 'keep', body: 'new' }, { name: '.wh.gone', body: '' }, { name: 'dir', body: 'now a file' }] },
    ];
    const { layout, manifestDesc } = await buildImage(join(work, 'layout'), layers);
    const names = await expectArchiveEqualsDirectory(layout, manifestDesc);
    expect(names.sort()).toEqual(['dir', 'keep']);
  });

  it('archives a ckpt layer whose blob goes on after its gzip stream ends', async () => {
    const layers: TestLayer[] = [
      { entries: [{ name: 'config.dump', body: '{}' }], trailing: 8 << 20 },
      { compression: 'zstd', entries: [{ name: 'spec.dump', body: '{}' }] },
    ];
    const { layout, manifestDesc } = await buildImage(join(work, 'layout'), layers, { artifactType: CHECKPOINT_ARTIFACT_TYPE });
    const names = await expectArchiveEqualsDirectory(layout, manifestDesc);
    expect(names.sort()).toEqual(['config.dump', 'spec.dump']);
  });

  it('refuses, where a checkpoint is expected, an image without CRIU inventory, and leaves nothing behind', async () => {
    const { layout, manifestDesc } = await buildImage(join(work, 'layout'), [{ entries: [{ name: 'hello.txt', body: 'hi' }] }]);
    const err = await failure(unpackToArchive(layout, manifestDesc, join(work, 'out.tar'), { checkpointImage: 'oci:plain:latest' }));
    expect(err.code).toBe('NOT_CHECKPOINT');
    expect(await outputs()).toEqual([]);
  });

  it('refuses a layer cut short (its digest correct) as CORRUPT_ARCHIVE, leaving nothing behind', async () => {
    const { layout, manifestDesc } = await buildImage(join(work, 'layout'), [
      { entries: [{ name: 'a', body: 'x'.repeat(4000) }, { name: 'b', body: 'y' }], truncate: 2048 },
    ]);
    const err = await failure(unpackToArchive(layout, manifestDesc, join(work, 'out.tar')));
    expect(err.code).toBe('CORRUPT_ARCHIVE');
    expect(await outputs()).toEqual([]);
  });

  it('refuses ckpt layers that overlap, leaving nothing behind', async () => {
    const { layout, manifestDesc } = await buildImage(
      join(work, 'layout'),
      [{ entries: [{ name: 'config.dump', body: 'a' }] }, { entries: [{ name: 'config.dump', body: 'b' }] }],
      { artifactType: CHECKPOINT_ARTIFACT_TYPE },
    );
    const err = await failure(unpackToArchive(layout, manifestDesc, join(work, 'out.tar')));
    expect(err.code).toBe('CORRUPT_ARCHIVE');
    expect(await outputs()).toEqual([]);
  });

  it('refuses an entry below a symbolic link of an earlier entry', async () => {
    const { layout, manifestDesc } = await buildImage(join(work, 'layout'), [
      {
        entries: [
          { name: 'a/', type: 'directory' },
          { name: 'a/b', type: 'symlink', linkname: '..' },
          { name: 'a/b/c', type: 'symlink', linkname: '../../outside' },
        ],
      },
    ]);
    const err = await failure(unpackToArchive(layout, manifestDesc, join(work, 'out.tar')));
    expect(err.code).toBe('UNSAFE_PATH');
    expect(await outputs()).toEqual([]);
  });

  it('refuses a symbolic link whose target passes through a later one, leaving nothing behind', async () => {
    const { layout, manifestDesc } = await buildImage(join(work, 'layout'), [
      {
        entries: [
          { name: 'a/', type: 'directory' },
          { name: 'a/b/', type: 'directory' },
          // Inside by its text; outside once r, which comes after it, is read as "..".
          { name: 'a/b/x', type: 'symlink', linkname: 'r/../../../etc' },
          { name: 'a/b/r', type: 'symlink', linkname: '../..' },
        ],
      },
    ]);
    const err = await failure(unpackToArchive(layout, manifestDesc, join(work, 'out.tar')));
    expect(err.code).toBe('UNSAFE_PATH');
    expect(err.message).toContain('links through the symbolic link "a/b/r"');
    expect(err.subject).toMatch(new RegExp(`^oci:${join(work, 'layout')}@sha256:[0-9a-f]{64}$`));
    expect(await outputs()).toEqual([]);
  });

  it('reports a corrupted blob as DIGEST_MISMATCH and leaves nothing behind', async () => {
    const copy = join(work, 'layout');
    await cp(FIXTURE_LAYOUT, copy, { recursive: true });
    const layout = await OciLayout.open(copy);
    const blob = layout.blobPath(FIXTURE_LAYER);
    await chmod(blob, 0o644);
    const handle = await open(blob, 'r+');
    await handle.write(Buffer.from('garbage!'), 0, 8, 100_000);
    await handle.close();
    const err = await failure(unpackToArchive(layout, await layout.resolve(FIXTURE_TAG), join(work, 'out.tar')));
    expect(err.code).toBe('DIGEST_MISMATCH');
    expect(await outputs()).toEqual([]);
  });

  it('stops when aborted, leaving nothing behind', async () => {
    const { layout, manifestDesc } = await buildImage(join(work, 'layout'), CHECKPOINT_LAYERS, {
      artifactType: CHECKPOINT_ARTIFACT_TYPE,
    });
    const controller = new AbortController();
    const err = await failure(
      unpackToArchive(layout, manifestDesc, join(work, 'out.tar'), {
        signal: controller.signal,
        onProgress: (e) => {
          if (e.state === 'done') controller.abort();
        },
      }),
    );
    expect(err.code).toBe('ABORTED');
    expect(await outputs()).toEqual([]);
  });

  it('refuses a destination that exists', async () => {
    const layout = await OciLayout.open(FIXTURE_LAYOUT);
    const archive = join(work, 'out.tar');
    await writeFile(archive, 'mine');
    const err = await failure(unpackToArchive(layout, await layout.resolve(FIXTURE_TAG), archive));
    expect(err.code).toBe('DESTINATION_EXISTS');
    expect(await outputs()).toEqual(['out.tar']);
  });

  it('refusing a destination that exists, removes the hard-linked copy a pull killed as it committed left beside it', async () => {
    const layout = await OciLayout.open(FIXTURE_LAYOUT);
    const archive = join(work, 'out.tar');
    await writeFile(archive, 'pulled');
    await link(archive, join(work, `.out.tar.ckpt-${await leftByExited()}`));
    expect((await failure(unpackToArchive(layout, await layout.resolve(FIXTURE_TAG), archive))).code).toBe('DESTINATION_EXISTS');
    expect(await readdir(work)).toEqual(['out.tar']);
  });
});
