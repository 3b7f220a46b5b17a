import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { chmod, cp, mkdir, mkdtemp, open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ProgressEvent } from '../../src/content/target.js';
import { HOLDER } from '../../src/fs/owned-names.js';
import { OciLayout } from '../../src/layout/store.js';
import { MediaType } from '../../src/oci/mediatypes.js';
import { unpackToDirectory } from '../../src/unpack/directory.js';
import {
  buildImage,
  CHECKPOINT_ARTIFACT_TYPE,
  CHECKPOINT_LAYERS,
  FIXTURE_LAYER,
  FIXTURE_LAYOUT,
  FIXTURE_TAG,
  gnuTarExtract,
  snapshot,
} from './helpers.js';
import { rejection as failure } from '../helpers/rejection.js';

let work: string;

beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'ckpt-unpack-dir-'));
});

afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

/** What the parent directory holds: the output alone, or nothing, never a temporary sibling. */
async function leftovers(): Promise<string[]> {
  return (await readdir(work)).filter((name) => name !== 'layout' && name !== 'reference').sort();
}

describe('unpackToDirectory with the Podman fixture image', () => {
  it('gives the tree of its layer, private to its owner', async () => {
    const layout = await OciLayout.open(FIXTURE_LAYOUT);
    const manifestDesc = await layout.resolve(FIXTURE_TAG);
    const events: ProgressEvent[] = [];
    const out = join(work, 'out');

    const result = await unpackToDirectory(layout, manifestDesc, out, { onProgress: (e) => events.push(e) });

    expect(result).toMatchObject({ path: out, layers: 1 });
    expect(result.entries).toBeGreaterThan(50);
    expect((await stat(out)).mode & 0o777).toBe(0o700);
    expect(await leftovers()).toEqual(['out']);

    // The reference: the layer blob itself, extracted by GNU tar.
    const reference = join(work, 'reference');
    await mkdir(reference);
    await gnuTarExtract(layout.blobPath(FIXTURE_LAYER), reference);
    const expected = await snapshot(reference);
    expect(Object.keys(expected)).toContain('checkpoint/pages-1.img');
    expect(await snapshot(out)).toEqual(expected);

    expect(events[0]).toMatchObject({ state: 'start', digest: FIXTURE_LAYER, bytes: 0 });
    expect(events.at(-1)).toMatchObject({ state: 'done', digest: FIXTURE_LAYER, bytes: events.at(-1)?.total });
  });

  it('removes what a killed pull to the same destination left beside it, not what a running one writes', async () => {
    const child = spawn('true');
    await once(child, 'exit');
    const namespace = HOLDER.includes('@') ? `@${HOLDER.split('@')[1]}` : '';
    const abandoned = join(work, `.out.ckpt-${child.pid}${namespace}.${randomUUID()}`);
    const running = join(work, `.out.ckpt-${HOLDER}.${randomUUID()}`);
    for (const dir of [abandoned, running]) await mkdir(join(dir, 'checkpoint'), { recursive: true });
    const layout = await OciLayout.open(FIXTURE_LAYOUT);
    await unpackToDirectory(layout, await layout.resolve(FIXTURE_TAG), join(work, 'out'));
    expect(existsSync(abandoned)).toBe(false);
    expect(existsSync(running)).toBe(true);
  });

  it('accepts an empty directory as the destination', async () => {
    const layout = await OciLayout.open(FIXTURE_LAYOUT);
    const out = join(work, 'out');
    await mkdir(out);
    await unpackToDirectory(layout, await layout.resolve(FIXTURE_TAG), out);
    expect(await readdir(out)).toContain('checkpoint');
    expect((await stat(out)).mode & 0o777).toBe(0o700);
  });

  it('refuses a destination that exists and is not empty, and leaves it alone', async () => {
    const layout = await OciLayout.open(FIXTURE_LAYOUT);
    const out = join(work, 'out');
    await mkdir(out);
    await writeFile(join(out, 'mine'), 'keep me');
    const err = await failure(unpackToDirectory(layout, await layout.resolve(FIXTURE_TAG), out));
    expect(err.code).toBe('DESTINATION_EXISTS');
    expect(err.subject).toBe(out);
    expect(await readdir(out)).toEqual(['mine']);
    expect(await leftovers()).toEqual(['out']);
  });

  it('reports a corrupted blob as DIGEST_MISMATCH and leaves nothing behind', async () => {
    const copy = join(work, 'layout');
    await cp(FIXTURE_LAYOUT, copy, { recursive: true });
    const layout = await OciLayout.open(copy);
    const manifestDesc = await layout.resolve(FIXTURE_TAG);
    const blob = layout.blobPath(FIXTURE_LAYER);
    await chmod(blob, 0o644);
    const handle = await open(blob, 'r+');
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, 4000);
    await handle.write(Buffer.from([byte.readUInt8(0) ^ 0xff]), 0, 1, 4000);
    await handle.close();

    const err = await failure(unpackToDirectory(layout, manifestDesc, join(work, 'out')));
    expect(err.code).toBe('DIGEST_MISMATCH');
    expect(err.message).toContain(FIXTURE_LAYER);
    expect(await leftovers()).toEqual([]);
  });

  it('stops when aborted and leaves nothing behind', async () => {
    const layout = await OciLayout.open(FIXTURE_LAYOUT);
    const controller = new AbortController();
    const promise = unpackToDirectory(layout, await layout.resolve(FIXTURE_TAG), join(work, 'out'), {
      signal: controller.signal,
      onProgress: (e) => {
        if (e.state === 'start') controller.abort();
      },
    });
    const err = await failure(promise);
    expect(err.code).toBe('ABORTED');
    expect(await leftovers()).toEqual([]);
  });
});

describe('unpackToDirectory with hand-made images', () => {
  it('extracts the non-overlapping layers of a ckpt image at once', async () => {
    const { layout, manifestDesc } = await buildImage(join(work, 'layout'), CHECKPOINT_LAYERS, {
      artifactType: CHECKPOINT_ARTIFACT_TYPE,
    });
    const out = join(work, 'out');
    const result = await unpackToDirectory(layout, manifestDesc, out, { concurrency: 3 });
    expect(result).toMatchObject({ layers: 3, bytes: (4 << 20) + 10240 + 9 + 4 + 10 + 2 + 13 });
    const tree = await snapshot(out);
    expect(Object.keys(tree).sort()).toEqual(
      [
        'artifacts',
        'artifacts/link',
        'checkpoint',
        'checkpoint/core-1.img',
        'checkpoint/inventory.img',
        'checkpoint/pages-1.img',
        'checkpoint/pages-2.img',
        'config.dump',
        'deleted.files',
        'rootfs-diff.tar',
        'spec.dump',
      ].sort(),
    );
    expect(tree['checkpoint']).toBe(`dir 700 ${Date.parse('2026-01-01T00:00:00Z') / 1000}`);
    expect(tree['artifacts/link']).toBe('symlink -> ../config.dump');
  });

  it('stops every layer when aborted, leaving nothing behind', async () => {
    const { layout, manifestDesc } = await buildImage(join(work, 'layout'), CHECKPOINT_LAYERS, {
      artifactType: CHECKPOINT_ARTIFACT_TYPE,
    });
    const controller = new AbortController();
    let started = 0;
    const err = await failure(
      unpackToDirectory(layout, manifestDesc, join(work, 'out'), {
        signal: controller.signal,
        onProgress: (e) => {
          if (e.state === 'start' && ++started === 2) controller.abort();
        },
      }),
    );
    expect(err.code).toBe('ABORTED');
    expect(await leftovers()).toEqual([]);
  });

  it('refuses a layer cut short (its digest correct) as CORRUPT_ARCHIVE, leaving nothing behind', async () => {
    const { layout, manifestDesc } = await buildImage(join(work, 'layout'), [
      { entries: [{ name: 'a', body: 'x'.repeat(4000) }, { name: 'b', body: 'y' }], truncate: 2048 },
    ]);
    const err = await failure(unpackToDirectory(layout, manifestDesc, join(work, 'out')));
    expect(err.code).toBe('CORRUPT_ARCHIVE');
    expect(await leftovers()).toEqual([]);
  });

  it('unpacks a layer whose blob goes on after its gzip stream ends (the rest is read for the digest)', async () => {
    const { layout, manifestDesc } = await buildImage(join(work, 'layout'), [
      { entries: [{ name: 'a', body: 'x'.repeat(4000) }], trailing: 8 << 20 },
      { compression: 'zstd', entries: [{ name: 'b', body: 'y' }] },
    ]);
    const out = join(work, 'out');
    await unpackToDirectory(layout, manifestDesc, out);
    expect((await readdir(out)).sort()).toEqual(['a', 'b']);
  });

  it('refuses ckpt layers that overlap, leaving nothing behind', async () => {
    const { layout, manifestDesc } = await buildImage(
      join(work, 'layout'),
      [{ entries: [{ name: 'config.dump', body: 'a' }] }, { entries: [{ name: 'config.dump', body: 'b' }] }],
      { artifactType: CHECKPOINT_ARTIFACT_TYPE },
    );
    const err = await failure(unpackToDirectory(layout, manifestDesc, join(work, 'out')));
    expect(err.code).toBe('CORRUPT_ARCHIVE');
    expect(err.message).toContain('config.dump');
    expect(await leftovers()).toEqual([]);
  });

  it('applies the layers of any other image in order: replacements and whiteouts', async () => {
    const { layout, manifestDesc } = await buildImage(join(work, 'layout'), [
      { entries: [{ name: 'keep', body: 'old' }, { name: 'gone', body: 'x' }, { name: 'dir/', type: 'directory' }, { name: 'dir/f', body: 'x' }] },
      { compression: 'zstd', entries: [{ name: 'keep', body: 'new' }, { name: '.wh.gone', body: '' }, { name: 'dir', body: 'now a file' }] },
    ]);
    const out = join(work, 'out');
    await unpackToDirectory(layout, manifestDesc, out);
    expect((await readdir(out)).sort()).toEqual(['dir', 'keep']);
    expect(await readFile(join(out, 'keep'), 'utf8')).toBe('new');
    expect(await readFile(join(out, 'dir'), 'utf8')).toBe('now a file');
  });

  it('refuses a hostile layer, naming the image and the layer, and leaves nothing behind', async () => {
    const { layout, manifestDesc, layerDescs } = await buildImage(join(work, 'layout'), [
      { entries: [{ name: 'fine', body: 'x' }, { name: '../escaped', body: 'x' }] },
    ]);
    const err = await failure(unpackToDirectory(layout, manifestDesc, join(work, 'out')));
    expect(err.code).toBe('UNSAFE_PATH');
    expect(err.subject).toBe(`oci:${join(work, 'layout')}@${layerDescs[0]?.digest}`);
    expect(await leftovers()).toEqual([]);
  });

  it('refuses symbolic links whose targets pass through one another, in any layer order', async () => {
    for (const [i, order] of [['x', 'r'], ['r', 'x']].entries()) {
      const link = { x: { name: 'd/x', type: 'symlink' as const, linkname: 'r/../../etc' }, r: { name: 'd/r', type: 'symlink' as const, linkname: '..' } };
      const { layout, manifestDesc } = await buildImage(
        join(work, `layout-${i}`),
        order.map((name) => ({ entries: [{ name: 'd/', type: 'directory' as const }, link[name as 'x' | 'r']] })),
        { artifactType: CHECKPOINT_ARTIFACT_TYPE },
      );
      const err = await failure(unpackToDirectory(layout, manifestDesc, join(work, `out-${i}`)));
      expect(err.code).toBe('UNSAFE_PATH');
      expect(err.message).toContain('"d/x" links through the symbolic link "d/r"');
    }
    expect((await leftovers()).filter((name) => !name.startsWith('layout-'))).toEqual([]);
  });

  it('refuses, where a checkpoint is expected, an image without CRIU inventory, and leaves nothing behind', async () => {
    const { layout, manifestDesc } = await buildImage(join(work, 'layout'), [{ entries: [{ name: 'hello.txt', body: 'hi' }] }]);
    const err = await failure(unpackToDirectory(layout, manifestDesc, join(work, 'out'), { checkpointImage: 'oci:plain:latest' }));
    expect(err.code).toBe('NOT_CHECKPOINT');
    expect(err.message).toBe('oci:plain:latest: not a checkpoint image: its layers hold no CRIU inventory.img');
    expect(await leftovers()).toEqual([]);
    // A checkpoint passes.
    const ckpt = await buildImage(join(work, 'ckpt'), CHECKPOINT_LAYERS, { artifactType: CHECKPOINT_ARTIFACT_TYPE });
    await unpackToDirectory(ckpt.layout, ckpt.manifestDesc, join(work, 'out'), { checkpointImage: 'oci:ckpt:latest' });
  });

  it('refuses an image index (the caller resolves it to one manifest)', async () => {
    const { layout, manifestDesc } = await buildImage(join(work, 'layout'), [{ entries: [{ name: 'f', body: 'x' }] }]);
    const err = await failure(unpackToDirectory(layout, { ...manifestDesc, mediaType: MediaType.imageIndex }, join(work, 'out')));
    expect(err.code).toBe('UNSUPPORTED');
    expect(await leftovers()).toEqual([]);
  });

  it.each([
    ['an encrypted layer', 'application/vnd.oci.image.layer.v1.tar+gzip+encrypted'],
    ['a layer that is not a tar', 'application/vnd.example.data'],
  ])('refuses %s as UNSUPPORTED, naming the layout and the layer', async (_what, mediaType) => {
    const { layout, manifestDesc, layerDescs } = await buildImage(join(work, 'layout'), [
      { entries: [{ name: 'f', body: 'x' }], mediaType },
    ]);
    const err = await failure(unpackToDirectory(layout, manifestDesc, join(work, 'out')));
    expect(err.code).toBe('UNSUPPORTED');
    expect(err.subject).toBe(`oci:${join(work, 'layout')}@${layerDescs[0]?.digest}`);
    expect(await leftovers()).toEqual([]);
  });
});
