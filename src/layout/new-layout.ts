import { readdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { ImageReference } from '../reference.js';
import { removeUnusedLayout } from './store.js';

/** What a layout directory looked like before a command wrote to it, so a failure can put it back. */
async function layoutBefore(dir: string): Promise<'missing' | 'empty' | 'present'> {
  try {
    return (await readdir(dir)).length === 0 ? 'empty' : 'present';
  } catch {
    return 'missing';
  }
}

/**
 * Runs `write`, which stores an image at `destination`. When it fails and the destination is a
 * layout it created (the directory was missing or empty), the layout is removed, unless another
 * process has it open to write or has tagged into it meanwhile.
 */
export async function removeNewLayoutOnFailure<T>(destination: ImageReference, write: () => Promise<T>): Promise<T> {
  const dir = destination.kind === 'layout' ? resolve(destination.dir) : undefined;
  const before = dir === undefined ? 'present' : await layoutBefore(dir);
  try {
    return await write();
  } catch (err) {
    // A failure to remove must not hide the first one.
    if (dir !== undefined && before !== 'present') await removeUnusedLayout(dir, before === 'empty').catch(() => undefined);
    throw err;
  }
}
