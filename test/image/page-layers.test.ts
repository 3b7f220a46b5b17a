import { randomBytes } from 'node:crypto';
import { readdir, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import type { CheckpointSource, SourceEntry } from '../../src/checkpoint/entry.js';
import { openCheckpoint } from '../../src/checkpoint/open.js';
import type { Compression } from '../../src/compress/codec.js';
import type { Store, Target } from '../../src/content/target.js';
import { CkptError } from '../../src/errors.js';
import { buildImage } from '../../src/image/build.js';
import type { WrittenLayer } from '../../src/image/layer.js';
import { writePageLayer } from '../../src/image/page-layer.js';
import { BLOCK_SIZE, type PageLayerJob } from '../../src/image/page-protocol.js';
import { ustarFileHeader } from '../../src/tar/ustar.js';
import { OciLayout } from '../../src/layout/store.js';
import { startSpareWorkers } from '../../src/threads/spares.js';
import { rejection } from '../helpers/rejection.js';
import { extractFixture, fixture, tempDir } from '../helpers/tree.js';

/** The same checkpoint with `change` applied to every entry it yields. */
function altered(source: CheckpointSource, change: (item: SourceEntry) => SourceEntry): CheckpointSource {
  return {
    name: source.name,
    kind: source.kind,
    fingerprint: () => source.fingerprint(),
    async *entries(signal) {
      for await (const item of source.entries(signal)) yield change(item);
    },
  };
}

/** Without regions, the main thread reads every page file and feeds it to a worker, as from a compressed archive. */
const fed = (source: CheckpointSource) => altered(source, ({ entry, open }) => ({ entry, open }));

async function pageLayers(source: CheckpointSource, compression: Compression): Promise<WrittenLayer[]> {
  const layout = await OciLayout.open(join(await tempDir(), 'layout'), { create: true });
  // A small bound gives several page layers, written side by side.
  const result = await buildImage(source, layout, { compression, hostInfo: false, maxLayerBytes: 100_000, tag: 't' });
  return result.layers.filter((l) => l.role === 'pages');
}

const summary = (layers: WrittenLayer[]) => layers.map((l) => ({ digest: l.desc.digest, size: l.desc.size, diffId: l.diffId }));

describe('page layers written on worker threads', () => {
  for (const compression of ['zstd', 'none'] as const) {
    it(`are the same bytes read by offset as fed by the main thread (${compression}), from a directory and from an uncompressed archive`, async () => {
      for (const input of [await extractFixture('podman-counter.tar'), fixture('podman-counter.tar')]) {
        const threaded = await pageLayers(await openCheckpoint(input), compression);
        expect(threaded.length).toBeGreaterThan(1);
        expect(summary(threaded)).toEqual(summary(await pageLayers(fed(await openCheckpoint(input)), compression)));
        if (compression === 'none') for (const l of threaded) expect(l.diffId).toBe(l.desc.digest);
      }
    });
  }

  it('are the same when workers were started ahead, as the CLI starts them, and more than the build takes', async () => {
    const input = fixture('podman-counter.tar');
    const expected = summary(await pageLayers(fed(await openCheckpoint(input)), 'zstd'));
    startSpareWorkers('image/page-worker', 6);
    expect(summary(await pageLayers(await openCheckpoint(input), 'zstd'))).toEqual(expected);
  });

  it('leave no worker that a failed layer stopped to the next layer, when the store fails just as the worker ends', async () => {
    const dir = await tempDir();
    const path = join(dir, 'pages-1.img');
    await writeFile(path, randomBytes(3 * BLOCK_SIZE + 12_345));
    const size = (await stat(path)).size;
    const entry = { path: 'checkpoint/pages-1.img', type: 'file', mode: 0o600, uid: 0, gid: 0, mtime: new Date(0), size } as const;
    const job: Required<PageLayerJob> = {
      entries: [{ header: ustarFileHeader(entry) ?? Buffer.alloc(0), path, offset: 0, size }],
      compression: 'zstd',
      level: 1,
      threads: 1,
    };
    /** Fails as the layer's last, short block arrives: the stream stops before the worker's `done` is read. */
    const failing = {
      name: 'failing',
      ingest: (_mediaType: string, content: Readable) =>
        new Promise((_ok, fail) => {
          content.on('error', fail).on('data', (chunk: Buffer) => {
            if (chunk.length < BLOCK_SIZE) content.destroy(new Error('store failed'));
          });
        }),
    } as unknown as Store;
    const layout = await OciLayout.open(join(dir, 'layout'), { create: true });
    for (let i = 0; i < 10; i++) {
      await expect(writePageLayer(job, failing, {})).rejects.toThrow('store failed');
      // The next layer takes a worker from the pool once the failed one's `done` has been read.
      await new Promise((ok) => setImmediate(ok));
      expect((await writePageLayer(job, layout, {})).desc.size).toBeGreaterThan(0);
    }
  });

  it('give the same digests from a .tar as from the same archive compressed with zstd', async () => {
    const zst = join(await tempDir(), 'counter.tar.zst');
    await execa('zstd', ['-q', fixture('podman-counter.tar'), '-o', zst]);
    const plain = await pageLayers(await openCheckpoint(fixture('podman-counter.tar')), 'zstd');
    const compressed = await pageLayers(await openCheckpoint(zst), 'zstd');
    expect(summary(plain)).toEqual(summary(compressed));
  });

  it('fail with READ_FAILED naming a pages file that shrank before it was read, and leave no image', async () => {
    const dir = await extractFixture('podman-counter.tar');
    const source = altered(await openCheckpoint(dir), (item) => {
      // Listed at its full size, cut before any worker reads it.
      if (item.entry.path === 'checkpoint/pages-1.img' && item.region) void truncate(item.region.path, 1000);
      return item;
    });
    const layoutDir = join(await tempDir(), 'layout');
    const layout = await OciLayout.open(layoutDir, { create: true });
    const err = await rejection(buildImage(source, layout, { hostInfo: false, tag: 't' }));
    expect(err.code).toBe('READ_FAILED');
    expect(err.message).toContain(join(dir, 'checkpoint/pages-1.img'));
    expect(err.message).toMatch(/shrank/);
    await expect(layout.resolve('t')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect((await readdir(layoutDir)).sort()).not.toContain('.ingest');
  });

  for (const name of ['podman-counter.tar', 'podman-counter.tar.zst']) {
    it(`stop on abort with ABORTED, leaving no image (${name})`, async () => {
      const layoutDir = join(await tempDir(), 'layout');
      const layout = await OciLayout.open(layoutDir, { create: true });
      const stop = new AbortController();
      const err = await rejection(
        buildImage(await openCheckpoint(fixture(name)), layout, {
          hostInfo: false,
          maxLayerBytes: 100_000,
          tag: 't',
          signal: stop.signal,
          onProgress: (event) => {
            if (event.id?.includes('pages')) stop.abort();
          },
        }),
      );
      expect(err.code).toBe('ABORTED');
      await expect(layout.resolve('t')).rejects.toMatchObject({ code: 'NOT_FOUND' });
      expect((await readdir(layoutDir)).sort()).not.toContain('.ingest');
    });
  }

  it('fail with CORRUPT_ARCHIVE when a compressed archive breaks inside a page file being fed, and leave no image', async () => {
    const zst = join(await tempDir(), 'counter.tar.zst');
    await execa('zstd', ['-q', fixture('podman-counter.tar'), '-o', zst]);
    await truncate(zst, Math.floor((await stat(zst)).size / 2));
    // Where the archive now breaks, in bytes of tar: inside pages-1.img, which the main thread is feeding.
    const prefix = (await execa('sh', ['-c', `zstd -dc ${zst} 2>/dev/null | wc -c`])).stdout.trim();
    let pages: { offset: number; size: number } | undefined;
    for await (const { entry, region } of (await openCheckpoint(fixture('podman-counter.tar'))).entries()) {
      if (entry.path === 'checkpoint/pages-1.img' && region) pages = { offset: region.offset, size: entry.size };
    }
    expect(Number(prefix)).toBeGreaterThan(pages?.offset ?? Infinity);
    expect(Number(prefix)).toBeLessThan((pages?.offset ?? 0) + (pages?.size ?? 0));
    const layoutDir = join(await tempDir(), 'layout');
    const layout = await OciLayout.open(layoutDir, { create: true });
    const err = await rejection(buildImage(await openCheckpoint(zst), layout, { hostInfo: false, tag: 't' }));
    expect(err.code).toBe('CORRUPT_ARCHIVE');
    expect(err.message).toContain(zst);
    await expect(layout.resolve('t')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect((await readdir(layoutDir)).sort()).not.toContain('.ingest');
  });
});

describe('page files fed to a worker by the main thread', () => {
  /** The Podman fixture with a pages file of `size` random bytes: more than the blocks in flight. */
  async function bigPages(size: number): Promise<string> {
    const dir = await extractFixture('podman-counter.tar');
    await writeFile(join(dir, 'checkpoint/pages-1.img'), randomBytes(size));
    return dir;
  }

  it('give the bytes of files read by offset when a file is many blocks long, from a directory and a .tar.zst', async () => {
    const dir = await bigPages(6 << 20);
    expect(summary(await pageLayers(fed(await openCheckpoint(dir)), 'zstd'))).toEqual(summary(await pageLayers(await openCheckpoint(dir), 'zstd')));
    // The same files archived (with tar's owners and times) and compressed: fed, as read by offset from the .tar.
    const tar = join(await tempDir(), 'big.tar');
    await execa('tar', ['-C', dir, '-cf', tar, '.']);
    await execa('zstd', ['-q', tar, '-o', `${tar}.zst`]);
    expect(summary(await pageLayers(await openCheckpoint(`${tar}.zst`), 'zstd'))).toEqual(summary(await pageLayers(await openCheckpoint(tar), 'zstd')));
  });

  it('fail with the error of a store that fails while the main thread waits for blocks, not hang', async () => {
    const dir = await bigPages(8 << 20);
    const layout = await OciLayout.open(join(await tempDir(), 'layout'), { create: true });
    // Takes small layers whole; gives up 2 MiB into a large one, while the feeding waits on it.
    const failing: Target = Object.assign(Object.create(layout) as OciLayout, {
      ingest: async (mediaType: string, content: Readable, options?: Parameters<Store['ingest']>[2]) => {
        const chunks: Buffer[] = [];
        let bytes = 0;
        for await (const chunk of content as AsyncIterable<Buffer>) {
          bytes += chunk.length;
          if (bytes > 2 << 20) throw new CkptError('WRITE_FAILED', 'the store gave up', { subject: 'store' });
          chunks.push(Buffer.from(chunk));
        }
        return layout.ingest(mediaType, Readable.from(chunks), options);
      },
    });
    const err = await rejection(buildImage(fed(await openCheckpoint(dir)), failing, { hostInfo: false, tag: 't' }));
    expect(err.code).toBe('WRITE_FAILED');
    expect(err.message).toContain('the store gave up');
    await expect(layout.resolve('t')).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('fail with READ_FAILED when a file gives fewer bytes than its header says', async () => {
    const source = altered(await openCheckpoint(fixture('podman-counter.tar')), ({ entry, open }) =>
      entry.path === 'checkpoint/pages-1.img' ? { entry, open: () => Readable.from([Buffer.alloc(1000)]) } : { entry, open },
    );
    const layout = await OciLayout.open(join(await tempDir(), 'layout'), { create: true });
    const err = await rejection(buildImage(source, layout, { hostInfo: false, tag: 't' }));
    expect(err.code).toBe('READ_FAILED');
    expect(err.message).toMatch(/pages-1\.img: read 1000 bytes of a \d+-byte file/);
    await expect(layout.resolve('t')).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });
});
