import { randomUUID } from 'node:crypto';
import { readdir, rm, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { inVanishingDir } from '../fs/vanishing-dir.js';
import { HOLDER, isRunning } from '../fs/owned-names.js';

/**
 * Each process writing to a layout leaves a mark here, `<HOLDER>.<random>`, for as long as it has
 * the layout open: a build failing in another process then knows the layout is still wanted,
 * even between two blob writes, before anything is tagged.
 */
export const USERS_DIR = '.users';

/** Leaves this process's mark in the layout at `dir` and returns it; fails with ENOENT when `dir` is gone. */
export async function markUser(dir: string): Promise<string> {
  const mark = join(dir, USERS_DIR, `${HOLDER}.${randomUUID()}`);
  await inVanishingDir(join(dir, USERS_DIR), () => writeFile(mark, '', { flag: 'wx' }));
  return mark;
}

/** Removes a mark markUser left, and the marks' directory once empty. */
export async function unmarkUser(mark: string): Promise<void> {
  await rm(mark, { force: true });
  await rmdir(join(mark, '..')).catch(() => undefined);
}

/**
 * Whether a running process has marked the layout at `dir`. Marks of processes that are gone are
 * removed; marks that cannot be read count as in use.
 */
export async function hasUsers(dir: string): Promise<boolean> {
  let names: string[];
  try {
    names = await readdir(join(dir, USERS_DIR));
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ENOENT';
  }
  let used = false;
  for (const name of names) {
    if (isRunning(name.slice(0, name.lastIndexOf('.')))) used = true;
    else await rm(join(dir, USERS_DIR, name), { force: true });
  }
  if (!used) await rmdir(join(dir, USERS_DIR)).catch(() => undefined);
  return used;
}
