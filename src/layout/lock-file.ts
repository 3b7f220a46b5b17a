import type { BigIntStats } from 'node:fs';
import { readFile, rm, stat } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { fromSystemError } from '../errors.js';
import { createWhole } from '../fs/create-whole.js';
import { HOLDER, isRunning, ownedName } from '../fs/owned-names.js';

/** A lock this old is left over: index.json is read, changed and replaced in milliseconds. */
const STALE_MS = 30_000;
const RETRY_MS = 10;

/**
 * Runs `update` while holding `lockPath`, a file created exclusively that holds this process's
 * pid: builds and copies in other processes tagging the same layout wait for each other instead
 * of each replacing index.json with its own copy, losing the other's tag. A lock whose process
 * is gone, or that is older than any update takes, was left by a crash and is taken over.
 */
export async function withLockFile<T>(lockPath: string, update: () => Promise<T>): Promise<T> {
  let mine: string | undefined;
  while ((mine = await create(lockPath)) === undefined) {
    if (!(await isStale(lockPath) && (await takeOver(lockPath)))) await sleep(RETRY_MS);
  }
  try {
    return await update();
  } finally {
    // Only this lock: `update` may have moved it away with its directory, and another process
    // may have made a lock of its own there since.
    const now = await stat(lockPath, { bigint: true }).then(identity, () => undefined);
    if (now === mine) await rm(lockPath, { force: true });
  }
}

/** A file as no other file is, even one made where it was after it was removed. */
function identity(info: BigIntStats): string {
  return `${info.dev}:${info.ino}:${info.ctimeNs}`;
}

/**
 * Creates `path` holding this process's name; its identity, or undefined when it exists. The name
 * is written first, under another name, and linked into place: a lock is never seen empty, even
 * when its maker is killed at that moment.
 */
async function create(path: string): Promise<string | undefined> {
  try {
    if (!(await createWhole(path, `${HOLDER}\n`, `${path}.${ownedName()}`))) return undefined;
    // After the temporary name is gone: that changes the file's ctime, part of its identity.
    return identity(await stat(path, { bigint: true }));
  } catch (err) {
    throw fromSystemError(err, path, true);
  }
}

/**
 * Removes a stale lock, as the one waiter holding `<lock>.takeover` and after judging it stale
 * again: two waiters that both found it stale would otherwise both remove it, the second one
 * removing the lock the first had just made. True when this waiter removed it.
 */
async function takeOver(lockPath: string): Promise<boolean> {
  const guard = `${lockPath}.takeover`;
  if ((await create(guard)) === undefined) {
    // Its holder died during a takeover (a few milliseconds): stale the same way.
    if (await isStale(guard)) await rm(guard, { force: true });
    return false;
  }
  try {
    if (!(await isStale(lockPath))) return false;
    await rm(lockPath, { force: true });
    return true;
  } finally {
    await rm(guard, { force: true });
  }
}

async function isStale(lockPath: string): Promise<boolean> {
  try {
    const [content, info] = await Promise.all([readFile(lockPath, 'utf8'), stat(lockPath)]);
    if (Date.now() - info.mtimeMs > STALE_MS) return true;
    // Empty: made by an older ckpt, whose holder is between creating and writing it.
    return content.trim() !== '' && !isRunning(content.trim());
  } catch {
    // Released meanwhile: try again.
    return false;
  }
}
