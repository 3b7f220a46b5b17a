import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, open, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ReadOnlyTarget } from '../../src/content/target.js';
import type { OciLayout } from '../../src/layout/store.js';
import type { Descriptor } from '../../src/oci/schemas.js';
import { unpackToArchive } from '../../src/unpack/archive.js';
import { unpackToDirectory } from '../../src/unpack/directory.js';
import { planUnpack, THREADED_MIN_SIZE } from '../../src/unpack/plan.js';
import { startSpareWorkers, stopSpareWorkers } from '../../src/threads/spares.js';
import { rejection as failure } from '../helpers/rejection.js';
import { tempDir } from '../helpers/tree.js';
import { buildImage, CHECKPOINT_ARTIFACT_TYPE, CHECKPOINT_LAYERS, gnuTarExtract, snapshot, type TestLayer } from './helpers.js';

/**
 * Large zstd layers are read on worker threads (zstd-worker.ts, run from dist/: build first).
 * Random bytes do not compress, so a layer holding a little more than THREADED_MIN_SIZE of them
 * is read on a worker, and one holding a little less on the main thread.
 */

const run = promisify(execFile);
const MTIME = new Date('2026-01-01T00:00:00Z');

let work: string;

beforeEach(async () => {
  work = await tempDir('ckpt-unpack-threaded-');
});

/** What the working directory holds besides the image: the outputs, never a temporary sibling. */
async function leftovers(): Promise<string[]> {
  return (await readdir(work)).filter((name) => name !== 'layout' && name !== 'abort.mjs').sort();
}

const LONG_NAME = `checkpoint/${'long-name-'.repeat(12)}.img`;

function pagesLayer(files: Record<string, Buffer | string>): TestLayer {
  return {
    compression: 'zstd',
    entries: [
      { name: 'checkpoint/', type: 'directory', mode: 0o700, mtime: MTIME },
      ...Object.entries(files).map(([name, body]) => ({ name: `checkpoint/${name}`, mode: 0o644, mtime: MTIME, body })),
    ],
  };
}

/** A checkpoint image whose two page layers are read on worker threads, with entries of every kind. */
async function threadedImage(pages: Buffer = randomBytes(THREADED_MIN_SIZE + (1 << 20))) {
  const second = pagesLayer({ 'pages-2.img': randomBytes(THREADED_MIN_SIZE + 4096), 'empty.img': '' });
  second.entries.push(
    { name: LONG_NAME, mode: 0o600, mtime: MTIME, body: 'in a PAX header' },
    { name: 'checkpoint/pages-2.link', type: 'symlink', linkname: 'pages-2.img', mtime: MTIME },
  );
  const metadata = CHECKPOINT_LAYERS[0] as TestLayer;
  return buildImage(join(work, 'layout'), [metadata, pagesLayer({ 'pages-1.img': pages, 'pages-1.map': 'a small file after a large one' }), second], {
    artifactType: CHECKPOINT_ARTIFACT_TYPE,
  });
}

/** The image's layers extracted one after the other by GNU tar. */
async function reference(layout: OciLayout, layers: Descriptor[]): Promise<Record<string, string>> {
  const dir = join(work, 'layout', 'reference');
  await mkdir(dir);
  for (const layer of layers) await gnuTarExtract(layout.blobPath(layer.digest), dir);
  return snapshot(dir);
}

/** The stream's bytes again, in pieces of `size` bytes. */
async function* pieces(stream: Readable, size: number): AsyncGenerator<Buffer> {
  let held = Buffer.alloc(0);
  for await (const chunk of stream) {
    held = Buffer.concat([held, chunk as Buffer]);
    for (; held.length >= size; held = held.subarray(size)) yield held.subarray(0, size);
  }
  if (held.length > 0) yield held;
}

/** Overwrites bytes of a blob at `offset`, as a bad disk or a bad proxy would. */
async function corrupt(layout: OciLayout, layer: Descriptor, offset: number): Promise<void> {
  const blob = layout.blobPath(layer.digest);
  await chmod(blob, 0o644);
  const handle = await open(blob, 'r+');
  await handle.write(Buffer.from('garbage!'), 0, 8, offset);
  await handle.close();
}

describe('zstd layers read on worker threads', () => {
  it('decides by compressed size: metadata on the main thread, pages on workers', async () => {
    const { layout, manifestDesc } = await buildImage(
      join(work, 'layout'),
      [pagesLayer({ 'pages-1.img': randomBytes(THREADED_MIN_SIZE - (64 << 10)) }), pagesLayer({ 'pages-2.img': randomBytes(THREADED_MIN_SIZE) })],
      { artifactType: CHECKPOINT_ARTIFACT_TYPE },
    );
    const plan = await planUnpack(layout, manifestDesc, {});
    expect(plan.layers.map((layer) => layer.desc.size < THREADED_MIN_SIZE)).toEqual([true, false]);
    expect(plan.layers.map((layer) => layer.threaded)).toEqual([false, true]);
    // Both ways give the same tree GNU tar gives.
    const out = join(work, 'out');
    await unpackToDirectory(layout, manifestDesc, out);
    expect(await snapshot(out)).toEqual(await reference(layout, plan.layers.map((layer) => layer.desc)));
  });

  it('gives the tree GNU tar gives, to a directory and to an archive', async () => {
    const { layout, manifestDesc, layerDescs } = await threadedImage();
    const plan = await planUnpack(layout, manifestDesc, {});
    expect(plan.layers.map((layer) => layer.threaded)).toEqual([false, true, true]);
    const expected = await reference(layout, layerDescs);
    expect(Object.keys(expected)).toContain(LONG_NAME);

    const dir = join(work, 'dir');
    const result = await unpackToDirectory(layout, manifestDesc, dir);
    expect(result.layers).toBe(3);
    expect(await snapshot(dir)).toEqual(expected);

    const archive = join(work, 'out.tar');
    await unpackToArchive(layout, manifestDesc, archive);
    const extracted = join(work, 'extracted');
    await mkdir(extracted);
    await gnuTarExtract(archive, extracted);
    expect(await snapshot(extracted)).toEqual(expected);
    expect(await leftovers()).toEqual(['dir', 'extracted', 'out.tar']);
  });

  it('gives the same tree whatever sizes the blob arrives in', async () => {
    const { layout, manifestDesc, layerDescs } = await threadedImage();
    const expected = await reference(layout, layerDescs);
    // A network hands over pieces of any size: none of them fits the input buffers exactly.
    for (const piece of [1000, 65_537, 3 << 20]) {
      const target: ReadOnlyTarget = {
        name: layout.name,
        resolve: (reference) => layout.resolve(reference),
        exists: (desc) => layout.exists(desc),
        fetch: async (desc, options) => Readable.from(pieces(await layout.fetch(desc, options), piece)),
      };
      const out = join(work, `out-${piece}`);
      await unpackToDirectory(target, manifestDesc, out);
      expect(await snapshot(out)).toEqual(expected);
    }
  });

  // At the start, zstd fails at once and the rest of the blob is read to check its digest; in the
  // middle of the pages, zstd decodes wrong bytes without noticing and the digest fails at the end.
  it.each([
    ['at its start', () => 0],
    ['in its middle', (size: number) => Math.floor(size / 2)],
  ])('reports a page layer corrupted %s as DIGEST_MISMATCH and leaves nothing behind', async (_where, offset) => {
    const { layout, manifestDesc, layerDescs } = await threadedImage();
    const layer = layerDescs[1] as Descriptor;
    await corrupt(layout, layer, offset(layer.size));
    for (const out of [join(work, 'out'), join(work, 'out.tar')]) {
      const unpack = out.endsWith('.tar') ? unpackToArchive : unpackToDirectory;
      const err = await failure(unpack(layout, manifestDesc, out));
      expect(err.code).toBe('DIGEST_MISMATCH');
      expect(err.message).toContain(layer.digest);
      expect(await leftovers()).toEqual([]);
    }
  });

  it('refuses a page layer cut short (its digest correct) as CORRUPT_ARCHIVE, leaving nothing behind', async () => {
    const { layout, manifestDesc } = await buildImage(join(work, 'layout'), [
      { ...pagesLayer({ 'pages-1.img': randomBytes(2 * THREADED_MIN_SIZE) }), truncate: THREADED_MIN_SIZE + 1000 },
    ]);
    for (const out of [join(work, 'out'), join(work, 'out.tar')]) {
      const unpack = out.endsWith('.tar') ? unpackToArchive : unpackToDirectory;
      const err = await failure(unpack(layout, manifestDesc, out));
      expect(err.code).toBe('CORRUPT_ARCHIVE');
      expect(await leftovers()).toEqual([]);
    }
  });

  it('stops when aborted mid-layer, leaves nothing behind, and lets the process exit', async () => {
    const { manifestDesc } = await threadedImage();
    // In a process of its own: a worker left running would keep it alive past the timeout.
    const dist = (path: string) => JSON.stringify(new URL(`../../dist/${path}`, import.meta.url).href);
    const script = join(work, 'abort.mjs');
    await writeFile(
      script,
      `import { OciLayout } from ${dist('layout/store.js')};
      import { unpackToDirectory } from ${dist('unpack/directory.js')};
      const [layoutDir, manifest, out] = process.argv.slice(2);
      const layout = await OciLayout.open(layoutDir);
      const controller = new AbortController();
      const started = Date.now();
      await unpackToDirectory(layout, JSON.parse(manifest), out, {
        signal: controller.signal,
        onProgress: (e) => { if (e.state === 'progress' && e.bytes >= 2 << 20) controller.abort(); },
      }).then(() => console.log('completed'), (err) => console.log(err.code));
      console.log(Date.now() - started < 5000 ? 'promptly' : 'slowly');
`,
    );
    const { stdout } = await run(process.execPath, [script, join(work, 'layout'), JSON.stringify(manifestDesc), join(work, 'out')], {
      timeout: 20_000,
    });
    expect(stdout.trim().split('\n')).toEqual(['ABORTED', 'promptly']);
    expect(await leftovers()).toEqual([]);
  });
});

describe('zstd workers started ahead of their layers', () => {
  afterEach(async () => {
    await stopSpareWorkers('unpack/zstd-worker');
  });

  it('decode the layers they are given, also after one failed on a spare', async () => {
    const { layout, manifestDesc, layerDescs } = await threadedImage();
    startSpareWorkers('unpack/zstd-worker', 2);
    const out = join(work, 'out');
    await unpackToDirectory(layout, manifestDesc, out);
    expect(await snapshot(out)).toEqual(await reference(layout, layerDescs));
    // The second page layer is broken; spares started again decode it and report the digest.
    await corrupt(layout, layerDescs[2] as Descriptor, 4096);
    startSpareWorkers('unpack/zstd-worker', 2);
    const err = await failure(unpackToDirectory(layout, manifestDesc, join(work, 'broken')));
    expect(err.code).toBe('DIGEST_MISMATCH');
    expect(err.message).toContain(layerDescs[2]?.digest);
  });

  it('once stopped unused, leave layers to workers of their own', async () => {
    const { layout, manifestDesc, layerDescs } = await threadedImage();
    startSpareWorkers('unpack/zstd-worker', 2);
    await stopSpareWorkers('unpack/zstd-worker');
    const out = join(work, 'out');
    await unpackToDirectory(layout, manifestDesc, out);
    expect(await snapshot(out)).toEqual(await reference(layout, layerDescs));
  });

  it('do not keep the process alive while idle, nor do page workers started ahead', async () => {
    const spares = new URL('../../dist/threads/spares.js', import.meta.url).href;
    // A script file: workers inherit the process's flags, and `-e` with them would fail to start.
    const script = join(work, 'spares.mjs');
    const start = "m.startSpareWorkers('unpack/zstd-worker', 2);\nm.startSpareWorkers('image/page-worker', 2);";
    await writeFile(script, `const m = await import(${JSON.stringify(spares)});\n${start}\nsetTimeout(() => console.log('online'), 1000);\n`);
    const { stdout } = await run(process.execPath, [script], { timeout: 10_000 });
    expect(stdout.trim()).toBe('online');
  });
});
