import { link, rm, writeFile } from 'node:fs/promises';

/**
 * Creates `path` holding `content`, written under `temp` (beside it) and linked into place: never
 * seen empty or partial, not even when the writer is killed, and never over a file someone else
 * made first. False when `path` exists.
 */
export async function createWhole(path: string, content: string, temp: string): Promise<boolean> {
  try {
    // Made, then not written (a full disk): it goes too.
    await writeFile(temp, content, { flag: 'wx' });
    await link(temp, path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    await rm(temp, { force: true });
  }
}
