import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** A real small file system: a tmpfs mounted on a fresh directory. Needs root. */
export interface Tmpfs {
  dir: string;
  /** Mounts a fresh, empty one in its place, with other options (`size=300k`, `ro`, `nr_inodes=8`). */
  reset(options: string): Promise<void>;
  unmount(): Promise<void>;
}

/** Undefined where mounting is not allowed (not root). */
export async function mountTmpfs(options: string): Promise<Tmpfs | undefined> {
  const dir = await mkdtemp(join(tmpdir(), 'ckpt-tmpfs-'));
  try {
    await run('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', dir]);
  } catch {
    await rm(dir, { recursive: true, force: true });
    return undefined;
  }
  return {
    dir,
    reset: async (next) => {
      await run('umount', [dir]);
      await run('mount', ['-t', 'tmpfs', '-o', next, 'tmpfs', dir]);
    },
    unmount: async () => {
      await run('umount', [dir]);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
