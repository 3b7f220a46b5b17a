import { constants } from 'node:fs';
import { access, link, lstat, readdir, readFile, realpath, rename, rm, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { CkptError, fromSystemError } from '../errors.js';
import { ownedName, removeOrphans } from '../fs/owned-names.js';

/**
 * Where a pull writes before its output is complete: a hidden sibling of the destination, so that
 * the final rename stays on one file system and is atomic. It names this process (ownedName), so that
 * one left by a pull that was killed can be recognised and removed (removeAbandonedSiblings).
 */
export function tempSibling(dest: string): string {
  return join(dirname(dest), `${siblingPrefix(dest)}${ownedName()}`);
}

/** What names a pull's temporary output for `dest`, beside it or, filled in place, in it. */
export function siblingPrefix(dest: string): string {
  return `.${basename(dest)}.ckpt-`;
}

/**
 * Whether a pull fills the existing empty directory `dest` from inside (in-place.ts) rather than
 * renaming a complete sibling over it: a mount point (a container's volume), on another file
 * system than its parent or bound from the same one, cannot be renamed over, nor a directory in a
 * parent the user may not write.
 */
export async function fillsInPlace(dest: string): Promise<boolean> {
  const info = await lstatIfExists(dest);
  if (!info?.isDirectory()) return false;
  const parent = dirname(dest);
  return info.dev !== (await stat(parent)).dev || (await isMountPoint(dest)) || (await access(parent, constants.W_OK).then(() => false, () => true));
}

/** A bind mount of a directory of the same file system has its parent's device: the mount table tells. */
async function isMountPoint(dir: string): Promise<boolean> {
  const table = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  const real = await realpath(dir);
  // The fifth field, with space, tab, newline and backslash escaped in octal.
  const unescape = (field: string) => field.replace(/\\([0-7]{3})/g, (_, code: string) => String.fromCharCode(parseInt(code, 8)));
  return table.split('\n').some((line) => unescape(line.split(' ')[4] ?? '') === real);
}

/**
 * Removes what earlier pulls to `dest` left beside it when they were killed (SIGKILL, the OOM
 * killer, a reboot): partial checkpoints, as large as the memory they hold. Only those whose
 * process is gone, in this pid namespace; best effort.
 */
export async function removeAbandonedSiblings(dest: string): Promise<void> {
  await removeOrphans(dirname(dest), siblingPrefix(dest));
}

/** The directory to write into must exist: a pull creates its output, not the folders above it. */
export async function assertParentDirectory(dest: string): Promise<void> {
  const parent = dirname(dest);
  let isDirectory: boolean;
  try {
    isDirectory = (await stat(parent)).isDirectory();
  } catch (err) {
    throw fromSystemError(err, parent, true);
  }
  if (!isDirectory) throw new CkptError('WRITE_FAILED', 'not a directory', { subject: parent });
}

/** A directory destination must not exist, or be an empty directory. */
export async function assertDirectoryFree(dest: string): Promise<void> {
  const info = await lstatIfExists(dest);
  if (!info) return;
  if (!info.isDirectory()) throw new CkptError('DESTINATION_EXISTS', 'already exists and is not a directory', { subject: dest });
  let entries: string[];
  try {
    entries = await readdir(dest);
  } catch (err) {
    throw fromSystemError(err, dest, true);
  }
  if (entries.length > 0) throw new CkptError('DESTINATION_EXISTS', 'already exists and is not empty', { subject: dest });
}

/** A file destination must not exist: an archive is never silently replaced. */
export async function assertFileFree(dest: string): Promise<void> {
  if (await lstatIfExists(dest)) throw new CkptError('DESTINATION_EXISTS', 'already exists', { subject: dest });
}

/** Moves a complete directory to its final name; an empty directory there is replaced (rename(2) allows it). */
export async function commitDirectory(temp: string, dest: string): Promise<void> {
  try {
    await rename(temp, dest);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTEMPTY' || code === 'EEXIST' || code === 'ENOTDIR') {
      throw new CkptError('DESTINATION_EXISTS', 'appeared while the pull ran', { subject: dest, cause: err });
    }
    throw fromSystemError(err, dest, true);
  }
}

/**
 * Moves a complete file to its final name without replacing anything that appeared meanwhile:
 * link(2) fails where rename(2) would overwrite. File systems without hard links fall back to rename.
 */
export async function commitFile(temp: string, dest: string): Promise<void> {
  try {
    await link(temp, dest);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw new CkptError('DESTINATION_EXISTS', 'appeared while the pull ran', { subject: dest, cause: err });
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'EMLINK') throw fromSystemError(err, dest, true);
    await assertFileFree(dest);
    try {
      await rename(temp, dest);
    } catch (renameErr) {
      throw fromSystemError(renameErr, dest, true);
    }
    return;
  }
  await unlink(temp).catch(() => undefined);
}

/** Removes a temporary output after a failure; a failure to remove must not hide the first one. */
export async function removeQuietly(path: string): Promise<void> {
  await rm(path, { recursive: true, force: true }).catch(() => undefined);
}

async function lstatIfExists(path: string) {
  try {
    return await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw fromSystemError(err, path, true);
  }
}
