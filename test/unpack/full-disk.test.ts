import { execFile } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OciLayout } from '../../src/layout/store.js';
import { unpackToArchive } from '../../src/unpack/archive.js';
import { unpackToDirectory } from '../../src/unpack/directory.js';
import { FIXTURE_LAYOUT, FIXTURE_TAG } from './helpers.js';
import { rejection as failure } from '../helpers/rejection.js';

const run = promisify(execFile);

/** A real full disk: a 256 KiB tmpfs, far smaller than the fixture checkpoint. Needs root. */
let disk: string | undefined;

beforeAll(async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ckpt-full-disk-'));
  try {
    await run('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', dir]);
    disk = dir;
  } catch {
    await rm(dir, { recursive: true, force: true });
  }
});

afterAll(async () => {
  if (!disk) return;
  await run('umount', [disk]);
  await rm(disk, { recursive: true, force: true });
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
});
