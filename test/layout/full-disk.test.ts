import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build } from '../../src/commands/build.js';
import { ckpt, fixture, tempDir } from '../helpers/tree.js';
import { rejection as failure } from '../helpers/rejection.js';
import { mountTmpfs, type Tmpfs } from '../helpers/tmpfs.js';

/** A real small file system for each case. Needs root. */
let disk: Tmpfs | undefined;

beforeAll(async () => {
  disk = await mountTmpfs('size=64k');
});

afterAll(async () => {
  await disk?.unmount();
});

const SOURCE = fixture('podman-counter.tar');
const PAGE = 4096;

/** What the build of SOURCE takes on a tmpfs: its files, each rounded up to whole pages. */
async function layoutPages(): Promise<number> {
  const dir = join(await tempDir(), 'layout');
  await build(SOURCE, `oci:${dir}:t`, { hostInfo: false });
  let pages = 0;
  const walk = async (at: string): Promise<void> => {
    for (const entry of await readdir(at, { withFileTypes: true })) {
      if (entry.isDirectory()) await walk(join(at, entry.name));
      else pages += Math.ceil((await stat(join(at, entry.name))).size / PAGE);
    }
  };
  await walk(dir);
  return pages;
}

describe('a build into a new layout on a file system that cannot take it', () => {
  it('the disk fills at any point up to the last file: exit 8, and the layout is gone, freeing the disk', async (ctx) => {
    if (!disk) return ctx.skip();
    const pages = await layoutPages();
    let failed = 0;
    // From the blobs to index.json and the lock around it: the removal once needed the lock's few bytes.
    for (let size = pages - 6; size <= pages; size++) {
      for (const where of ['layout', '']) {
        await disk.reset(`size=${size * PAGE}`);
        const dir = join(disk.dir, where);
        const made = await build(SOURCE, `oci:${dir}:t`, { hostInfo: false }).then(
          () => true,
          (err: Error & { code?: string }) => {
            expect(err.code, err.message).toBe('WRITE_FAILED');
            expect(err.message).toContain('no space left on device');
            return false;
          },
        );
        if (made) continue;
        failed++;
        // A layout in a directory of its own goes; one in a mount point leaves the mount point empty.
        expect(await readdir(disk.dir), `${size} pages, ${where || 'mount point'}`).toEqual([]);
      }
    }
    expect(failed).toBeGreaterThan(4);
  });

  it('no inodes left, or read-only, directories above it to make too: exit 8 saying so, no layout', async (ctx) => {
    if (!disk) return ctx.skip();
    for (const [options, message] of [
      ['size=4m,nr_inodes=9', 'no space left on device'],
      ['size=4m,nr_inodes=3', 'no space left on device'],
      ['size=4m,ro', 'read-only file system'],
    ] as const) {
      await disk.reset(options);
      // Directories above the layout to make too: each level's failure is what it says.
      const dir = join(disk.dir, 'a', 'b', 'layout');
      const err = await failure(build(SOURCE, `oci:${dir}:t`, { hostInfo: false }));
      expect(err.code, `${options}: ${err.message}`).toBe('WRITE_FAILED');
      expect(err.message).toContain(message);
      await expect(stat(dir)).rejects.toThrow(/ENOENT/);
      const run = await ckpt(['build', SOURCE, `oci:${dir}:t`, '--no-host-info']);
      expect(run.exitCode, run.stderr).toBe(8);
      // One line naming the layout (oci:DIR), or the file in it that failed.
      expect(run.stderr.trim().split('\n')).toHaveLength(1);
      const named = [`ckpt: oci:${dir}: `, `ckpt: ${dir}/`].some((start) => run.stderr.startsWith(start));
      expect(named && run.stderr.trim().endsWith(`: ${message}`), `${options}: ${run.stderr}`).toBe(true);
    }
  });
});
