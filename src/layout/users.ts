import { randomUUID } from 'node:crypto';
import { mkdir, readdir, rm, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isAlive } from './lock-file.js';

/**
 * Each process writing to a layout leaves a mark here, `<pid>.<random>`, for as long as it has
 * the layout open: a build failing in another process then knows the layout is still wanted,
 * even between two blob writes, before anything is tagged.
 */
const USERS_DIR = '.users';

/** Leaves this process's mark in the layout at `dir` and returns it; fails with ENOENT when `dir` is gone. */
export async function markUser(dir: string): Promise<string> {
  const mark = join(dir, USERS_DIR, `${process.pid}.${randomUUID()}`);
  for (let attempt = 1; ; attempt++) {
    await mkdir(join(dir, USERS_DIR)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
    try {
      await writeFile(mark, '', { flag: 'wx' });
      return mark;
    } catch (err) {
      // Another process leaving removed the emptied directory between our mkdir and our write.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || attempt === 10) throw err;
    }
  }
}

/** Removes a mark markUser left, and the marks' directory once empty. */
export async function unmarkUser(mark: string): Promise<void> {
  await rm(mark, { force: true });
  await rmdir(join(mark, '..')).catch(() => undefined);
}

/** Whether a running process has marked the layout at `dir`; marks of processes that are gone are removed. */
export async function hasUsers(dir: string): Promise<boolean> {
  const names = await readdir(join(dir, USERS_DIR)).catch(() => []);
  let used = false;
  for (const name of names) {
    if (isAlive(Number(name.split('.')[0]))) used = true;
    else await rm(join(dir, USERS_DIR, name), { force: true });
  }
  return used;
}
