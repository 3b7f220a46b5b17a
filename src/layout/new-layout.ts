import { readdir, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { ImageReference } from '../reference.js';
import { removeUnusedLayout } from './store.js';

type Before = { state: 'missing' | 'present' } | { state: 'empty'; mode: number };

/** What a layout directory looked like before a command wrote to it, so a failure can put it back. */
async function layoutBefore(dir: string): Promise<Before> {
  try {
    if ((await readdir(dir)).length > 0) return { state: 'present' };
    return { state: 'empty', mode: (await stat(dir)).mode & 0o7777 };
  } catch {
    return { state: 'missing' };
  }
}

/**
 * Runs `write`, which stores an image at `destination`. When it fails and the destination is a
 * layout it created (the directory was missing or empty), the layout is removed, unless another
 * process has it open to write or has tagged into it meanwhile; an empty directory emptied again
 * gets back the mode it had before the layout made it private.
 */
export async function removeNewLayoutOnFailure<T>(destination: ImageReference, write: () => Promise<T>): Promise<T> {
  const dir = destination.kind === 'layout' ? resolve(destination.dir) : undefined;
  const before: Before = dir === undefined ? { state: 'present' } : await layoutBefore(dir);
  try {
    return await write();
  } catch (err) {
    if (dir !== undefined && before.state !== 'present') {
      // A failure to remove must not hide the first one.
      await removeUnusedLayout(dir, before.state === 'empty', before.state === 'empty' ? before.mode : undefined).catch(() => undefined);
    }
    throw err;
  }
}
