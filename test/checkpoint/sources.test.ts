import { readFile, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { describe, expect, it } from 'vitest';
import type { CheckpointSource, FileRegion } from '../../src/checkpoint/entry.js';
import { ArchiveSource } from '../../src/checkpoint/sources/archive.js';
import { DirectorySource } from '../../src/checkpoint/sources/directory.js';
import { rejection } from '../helpers/rejection.js';
import { regionBytes } from '../helpers/region.js';
import { ARCHIVE_FIXTURES, extractFixture, fixture } from '../helpers/tree.js';

/** A file entry's content, as a layer writer reads it. */
function content(open: (() => Readable) | undefined): Promise<Buffer> {
  if (!open) throw new Error('a file entry without content');
  return buffer(open());
}

/** Every file's region holds exactly what open() streams; returns the regions seen. */
async function checkRegions(source: CheckpointSource): Promise<FileRegion[]> {
  const regions: FileRegion[] = [];
  for await (const { entry, open: openContent, region } of source.entries()) {
    if (entry.type !== 'file') {
      expect(region, entry.path).toBeUndefined();
      continue;
    }
    const bytes = await content(openContent);
    expect(bytes.length, entry.path).toBe(entry.size);
    if (!region) continue;
    expect((await regionBytes(region, entry.size)).equals(bytes), entry.path).toBe(true);
    regions.push(region);
  }
  return regions;
}

describe('sources say where their files lie', () => {
  it('a directory: every file at offset 0 of itself', async () => {
    const dir = await extractFixture('podman-counter.tar');
    const source = new DirectorySource(dir);
    const regions = await checkRegions(source);
    expect(regions.length).toBeGreaterThan(10);
    const paths: string[] = [];
    for await (const { entry, region } of source.entries()) {
      if (region) paths.push(region.path);
      if (region) expect(region).toEqual({ path: join(dir, entry.path), offset: 0 });
    }
    expect(paths).toContain(join(dir, 'checkpoint', 'inventory.img'));
  });

  for (const name of ARCHIVE_FIXTURES) {
    const compressed = !name.endsWith('.tar');
    it(`${name}: ${compressed ? 'no regions, the archive is read as a stream' : 'regions of the archive itself'}`, async () => {
      const source = await ArchiveSource.open(fixture(name));
      const regions = await checkRegions(source);
      if (compressed) {
        expect(regions).toEqual([]);
        return;
      }
      expect(regions.length).toBeGreaterThan(10);
      expect(new Set(regions.map((r) => r.path))).toEqual(new Set([fixture(name)]));
      // In archive order: each region past the one before.
      const offsets = regions.map((r) => r.offset);
      expect(offsets).toEqual([...offsets].sort((a, b) => a - b));
    });
  }
});

describe('a directory file read as listed', () => {
  it('a file that grows after listing still gives the listed size', async () => {
    const dir = await extractFixture('podman-counter.tar');
    const path = join(dir, 'spec.dump');
    const listed = (await readFile(path)).length;
    for await (const { entry, open: openContent } of new DirectorySource(dir).entries()) {
      if (entry.path !== 'spec.dump') continue;
      await writeFile(path, '\n more', { flag: 'a' });
      expect((await content(openContent)).length).toBe(listed);
    }
  });

  it('a file that shrinks after listing fails its read', async () => {
    const dir = await extractFixture('podman-counter.tar');
    const path = join(dir, 'spec.dump');
    for await (const { entry, open: openContent } of new DirectorySource(dir).entries()) {
      if (entry.path !== 'spec.dump') continue;
      await truncate(path, 10);
      const err = await rejection(content(openContent));
      expect(err.code).toBe('READ_FAILED');
      expect(err.message).toMatch(new RegExp(`^${path}: file ends \\d+ bytes before byte \\d+`));
    }
  });
});
