import { execFile } from 'node:child_process';
import { chmod, chown, mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { pull } from '../../src/commands/pull.js';
import { HOLDER } from '../../src/fs/owned-names.js';
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
    await chmod(dest, 0o755);
    const err = await failure(pull(SOURCE, dest));
    expect(err.code).toBe('WRITE_FAILED');
    expect(err.message).toContain('no space left on device');
    expect(await readdir(dest)).toEqual([]);
    // A directory the pull did not make keeps its mode when the pull fails.
    expect((await stat(dest)).mode & 0o777).toBe(0o755);
  });

  /** An empty mount point of its own, bound over a fresh directory. */
  async function mountPoint(ctx: { skip: () => void }): Promise<string> {
    const base = await tempDir();
    const [volume, dest] = [join(base, 'volume'), join(base, 'dest')];
    await mkdir(volume);
    await mkdir(dest);
    if (!(await run('mount', ['--bind', volume, dest]).then(() => true, () => false))) ctx.skip();
    undo.push(() => run('umount', [dest]));
    return dest;
  }

  it('a pull killed while it moved its tree up: the next pull takes the half move back and succeeds', async (ctx) => {
    const dest = await mountPoint(ctx);
    const dead = HOLDER.replace(/^\d+/, '999999999');
    const temp = `.dest.ckpt-${dead}.1f2f5a52-2a0e-4a8e-9d3c-3c4b5a6d7e8f`;
    // Two entries had moved up, the rest were still in the temporary tree.
    await mkdir(join(dest, temp, 'checkpoint'), { recursive: true });
    await writeFile(join(dest, temp, 'spec.dump'), '{}');
    await mkdir(join(dest, 'artifacts'));
    await writeFile(join(dest, 'config.dump'), '{}');
    await writeFile(join(dest, '.dest.ckpt-moving'), JSON.stringify({ holder: dead, temp, names: ['artifacts', 'config.dump', 'checkpoint', 'spec.dump'] }));
    await pull(SOURCE, dest);
    expect(await snapshot(dest)).toEqual(await expected());
  });

  it('two pulls at once into one mount point: one fills it, the other fails and leaves nothing', async (ctx) => {
    const want = await expected();
    for (let round = 0; round < 6; round++) {
      const dest = await mountPoint(ctx);
      const results = await Promise.allSettled([pull(SOURCE, dest), pull(SOURCE, dest)]);
      expect(results.filter((r) => r.status === 'fulfilled'), `round ${round}`).toHaveLength(1);
      const lost = results.find((r) => r.status === 'rejected');
      expect((lost as PromiseRejectedResult).reason).toMatchObject({ code: 'DESTINATION_EXISTS' });
      expect(await snapshot(dest)).toEqual(want);
      // The pull that lost does not open the winner's tree again.
      expect((await stat(dest)).mode & 0o777).toBe(0o700);
    }
  });

  it('a marker not of ckpt\'s making, or beside files of the user: nothing is deleted, the pull refuses', async (ctx) => {
    const dest = await mountPoint(ctx);
    const parent = join(dest, '..');
    await writeFile(join(parent, 'sibling.txt'), 'precious');
    await writeFile(join(dest, 'config.dump'), 'mine');
    await writeFile(join(dest, 'notes.txt'), 'mine too');
    const dead = HOLDER.replace(/^\d+/, '999999999');
    const temp = `.dest.ckpt-${dead}.2f2f5a52-2a0e-4a8e-9d3c-3c4b5a6d7e8f`;
    await mkdir(join(dest, temp));
    const markers = [
      { holder: dead, temp: '.', names: ['..'] },
      { holder: '999999', temp: '.', names: ['config.dump', 'notes.txt'] },
      // Of ckpt's making, but the directory holds a file the move did not put there.
      { holder: dead, temp, names: ['config.dump'] },
    ];
    for (const marker of markers) {
      await writeFile(join(dest, '.dest.ckpt-moving'), JSON.stringify(marker));
      expect((await failure(pull(SOURCE, dest))).code).toBe('DESTINATION_EXISTS');
      expect((await readdir(dest)).filter((name) => !name.startsWith('.')).sort()).toEqual(['config.dump', 'notes.txt']);
      expect(await readdir(parent)).toContain('sibling.txt');
    }
    // Listing every file of the directory, with a temporary tree and a marker another user made
    // (a shared, sticky directory): still nothing deleted.
    const nobody = await run('id', ['-u', 'nobody']).then((r) => Number(r.stdout.trim()), () => undefined);
    if (nobody !== undefined) {
      await mkdir(join(dest, temp), { recursive: true });
      await chown(join(dest, temp), nobody, nobody);
      await writeFile(join(dest, '.dest.ckpt-moving'), JSON.stringify({ holder: dead, temp, names: ['config.dump', 'notes.txt'] }));
      await chown(join(dest, '.dest.ckpt-moving'), nobody, nobody);
      expect((await failure(pull(SOURCE, dest))).code).toBe('DESTINATION_EXISTS');
      expect((await readdir(dest)).filter((name) => !name.startsWith('.')).sort()).toEqual(['config.dump', 'notes.txt']);
    }
  });

  it('a marker listing another pull\'s temporary tree: that tree is not deleted', async (ctx) => {
    const dest = await mountPoint(ctx);
    const dead = HOLDER.replace(/^\d+/, '999999999');
    const temp = `.dest.ckpt-${dead}.3f2f5a52-2a0e-4a8e-9d3c-3c4b5a6d7e8f`;
    // A live pull's tree (this process stands for it).
    const live = `.dest.ckpt-${HOLDER}.4f2f5a52-2a0e-4a8e-9d3c-3c4b5a6d7e8f`;
    await mkdir(join(dest, temp));
    await mkdir(join(dest, live));
    await writeFile(join(dest, '.dest.ckpt-moving'), JSON.stringify({ holder: dead, temp, names: [live] }));
    expect((await failure(pull(SOURCE, dest))).code).toBe('DESTINATION_EXISTS');
    expect(await readdir(dest)).toContain(live);
    expect((await stat(dest)).mode & 0o777).toBe(0o755);
  });
});

describe('a pull to an empty directory the user owns, in a parent only root may write', () => {
  it('a directory the user may write in but not close to others (chmod): exit 8, left as it was', async (ctx) => {
    if (process.getuid?.() !== 0) return ctx.skip();
    const base = await tempDir();
    const dest = join(base, 'shared');
    await mkdir(dest);
    await chmod(dest, 0o777);
    await chmod(base, 0o755);
    const asNobody = await run('su', ['-s', '/bin/sh', 'nobody', '-c', `node ${CKPT} pull ${SOURCE} ${dest}`]).then(
      () => ({ code: 0, stderr: '' }),
      (err: { code: number; stderr: string }) => err,
    );
    expect(asNobody.code).toBe(8);
    expect(asNobody.stderr.trim()).toBe(`ckpt: ${dest}: permission denied`);
    expect(await readdir(dest)).toEqual([]);
    expect((await stat(dest)).mode & 0o777).toBe(0o777);
  });

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
