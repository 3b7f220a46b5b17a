import { execFile } from 'node:child_process';
import { chmod, chown, mkdir, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { pull } from '../../src/commands/pull.js';
import { HOLDER } from '../../src/layout/lock-file.js';
import { CKPT, tempDir } from '../helpers/tree.js';
import { rejection as failure } from '../helpers/rejection.js';
import { mountTmpfs, type Tmpfs } from '../helpers/tmpfs.js';
import { FIXTURE_LAYOUT, FIXTURE_TAG, snapshot } from './helpers.js';

const run = promisify(execFile);
const SOURCE = `oci:${FIXTURE_LAYOUT}:${FIXTURE_TAG}`;

/** Undone after each test: mounts, innermost first. */
const undo: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (let step = undo.pop(); step; step = undo.pop()) await step();
});

async function tmpfs(options: string): Promise<Tmpfs | undefined> {
  const mounted = await mountTmpfs(options);
  if (mounted) undo.push(() => mounted.unmount());
  return mounted;
}

/** What a pull to a fresh directory gives, to compare with. */
async function expected(): Promise<Record<string, string>> {
  const out = join(await tempDir(), 'out');
  await pull(SOURCE, out);
  return snapshot(out);
}

/** A container's volume: an empty directory mounted over one of its parent's file system. Needs root. */
describe('a pull to an empty directory that is a mount point', () => {
  it('a bind mount of the same file system, its name with a space: filled from inside, mode 0700, nothing left beside it', async (ctx) => {
    const base = await tempDir();
    const [volume, dest] = [join(base, 'volume'), join(base, 'restore here')];
    await mkdir(volume);
    await mkdir(dest);
    try {
      await run('mount', ['--bind', volume, dest]);
    } catch {
      return ctx.skip();
    }
    undo.push(() => run('umount', [dest]));
    await pull(SOURCE, dest);
    expect(await snapshot(dest)).toEqual(await expected());
    expect((await stat(dest)).mode & 0o777).toBe(0o700);
    expect(await readdir(base)).toEqual(['restore here', 'volume'].sort());
  });

  it('a file system of its own: the bytes go there, not to the parent; a failure empties it again', async (ctx) => {
    // The parent has no room for the checkpoint; the mount point has.
    const parent = await tmpfs('size=64k');
    if (!parent) return ctx.skip();
    const dest = join(parent.dir, 'mnt');
    await mkdir(dest);
    const volume = await run('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', dest]).then(() => true, () => false);
    expect(volume).toBe(true);
    undo.push(() => run('umount', [dest]));
    // A killed pull's leftover inside it goes first; a live process's would stay.
    const leftover = join(dest, `.mnt.ckpt-${HOLDER.replace(/^\d+/, '999999999')}.0f2f5a52-2a0e-4a8e-9d3c-3c4b5a6d7e8f`);
    await mkdir(leftover);
    await pull(SOURCE, dest);
    expect(await snapshot(dest)).toEqual(await expected());
    expect(await readdir(parent.dir)).toEqual(['mnt']);

    await run('umount', [dest]);
    await run('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dest]);
    const err = await failure(pull(SOURCE, dest));
    expect(err.code).toBe('WRITE_FAILED');
    expect(err.message).toContain('no space left on device');
    expect(await readdir(dest)).toEqual([]);
  });
});

describe('a pull to an empty directory the user owns, in a parent only root may write', () => {
  it('succeeds as that user, filled from inside', async (ctx) => {
    const base = await tempDir();
    const dest = join(base, 'out');
    await mkdir(dest);
    const nobody = await run('id', ['-u', 'nobody']).then((r) => Number(r.stdout.trim()), () => undefined);
    if (nobody === undefined || process.getuid?.() !== 0) return ctx.skip();
    await chown(dest, nobody, nobody);
    await chmod(base, 0o755);
    const asNobody = (to: string) => run('su', ['-s', '/bin/sh', 'nobody', '-c', `node ${CKPT} pull -q ${SOURCE} '${to}'`]);
    expect((await asNobody(dest)).stdout).toMatch(/^sha256:/);
    expect(await readdir(base)).toEqual(['out']);
    // The same tree as the user's pull to a new directory (without root, directories keep u+rwx).
    const open = await tempDir();
    await chmod(open, 0o1777);
    await asNobody(join(open, 'fresh'));
    expect(await snapshot(dest)).toEqual(await snapshot(join(open, 'fresh')));
  });
});
