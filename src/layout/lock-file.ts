import { open, readFile, rm, stat } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { fromSystemError } from '../errors.js';

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
  for (;;) {
    try {
      const handle = await open(lockPath, 'wx');
      try {
        await handle.writeFile(`${process.pid}\n`);
      } finally {
        await handle.close();
      }
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw fromSystemError(err, lockPath, true);
    }
    if (await isStale(lockPath)) await rm(lockPath, { force: true });
    else await sleep(RETRY_MS);
  }
  try {
    return await update();
  } finally {
    await rm(lockPath, { force: true });
  }
}

async function isStale(lockPath: string): Promise<boolean> {
  try {
    const [content, info] = await Promise.all([readFile(lockPath, 'utf8'), stat(lockPath)]);
    if (Date.now() - info.mtimeMs > STALE_MS) return true;
    const pid = Number(content.trim());
    // Empty: its holder is between creating and writing it.
    return Number.isInteger(pid) && pid > 0 && !isAlive(pid);
  } catch {
    // Released meanwhile: try again.
    return false;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists, under another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
