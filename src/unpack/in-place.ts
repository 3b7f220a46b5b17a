import type { Stats } from 'node:fs';
import { chmod, lstat, readdir, readFile, rename, rm, rmdir, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { z } from 'zod';
import { CkptError, fromSystemError } from '../errors.js';
import { createWhole } from '../fs/create-whole.js';
import { HOLDER, isRunning, ownedBy, ownedName, removeOrphans } from '../fs/owned-names.js';
import { siblingPrefix } from './destination.js';
import { PRIVATE_DIR } from '../fs/private-modes.js';

/**
 * A pull into an existing empty directory that cannot be renamed over (a mount point, such as a
 * container's volume, or a directory in a parent the user may not write) fills it from inside: the
 * tree is written to a hidden directory within it, then its entries are moved up. The move is a
 * few renames, not one: it runs under a marker that lists them, which a second pull finds and
 * which lets the next pull take back a move a killed one left half done.
 */
export interface InPlace {
  dest: string;
  /** Where the tree is written, inside `dest`. */
  temp: string;
  /** The directory's mode before the pull closed it, given back if the pull fails. */
  mode: number;
}

const MarkerSchema = z.object({ holder: z.string(), temp: z.string(), names: z.array(z.string()) });

function marker(dest: string): string {
  return join(dest, `.${basename(dest)}.ckpt-moving`);
}

/**
 * Closes `dest` to its owner and names the temporary tree in it: before any byte moves, so that a
 * directory the user may write in but not chmod fails now, not after the whole transfer.
 */
export async function startInPlace(dest: string): Promise<InPlace> {
  try {
    const { mode } = await stat(dest);
    await chmod(dest, PRIVATE_DIR);
    return { dest, temp: join(dest, `${siblingPrefix(dest)}${ownedName()}`), mode: mode & 0o7777 };
  } catch (err) {
    throw fromSystemError(err, dest, true);
  }
}

/**
 * Moves the complete tree up into `dest`, once nothing but pulls' temporary trees is there and no
 * other pull is moving its own; a failure on the way moves back what had moved.
 */
export async function commitInPlace(place: InPlace): Promise<void> {
  const { dest, temp } = place;
  const ownPrefix = siblingPrefix(dest);
  const appeared = () => new CkptError('DESTINATION_EXISTS', 'appeared while the pull ran', { subject: dest });
  const names = await readdir(temp);
  const content = JSON.stringify({ holder: HOLDER, temp: basename(temp), names });
  // Written under a name of this process, which the next pull removes if it was killed meanwhile.
  if (!(await createWhole(marker(dest), content, join(dest, `${ownPrefix}${ownedName()}`)))) throw appeared();
  const moved: string[] = [];
  try {
    // Pulls' temporary trees and this marker share the prefix; anything else is someone's.
    if ((await readdir(dest)).some((name) => !name.startsWith(ownPrefix))) throw appeared();
    for (const name of names) {
      await rename(join(temp, name), join(dest, name));
      moved.push(name);
    }
    await rmdir(temp);
  } catch (err) {
    for (const name of moved.reverse()) await rename(join(dest, name), join(temp, name)).catch(() => undefined);
    throw err;
  } finally {
    await rm(marker(dest), { force: true });
  }
}

/**
 * After a failure: the temporary tree goes, and the directory, if that leaves it empty, gets its
 * mode back (another pull's tree, being written or moved, stays closed). Best effort.
 */
export async function abandonInPlace(place: InPlace): Promise<void> {
  await rm(place.temp, { recursive: true, force: true }).catch(() => undefined);
  const rest = await readdir(place.dest).catch(() => ['?']);
  if (rest.length === 0) await chmod(place.dest, place.mode).catch(() => undefined);
}

/**
 * Removes what pulls killed while they filled `dest` left in it: a move half done first (it is
 * judged by whether its temporary tree is still there), then temporary trees. Only those whose
 * process is gone; best effort.
 */
export async function removeAbandonedInPlace(dest: string): Promise<void> {
  await removeAbandonedMove(dest);
  await removeOrphans(dest, siblingPrefix(dest));
}

/**
 * Takes back the move of a pull killed while it moved its tree into `dest`. Only a marker of that
 * making is trusted: its temporary tree is still there, named for the same process, which is gone;
 * the directory holds nothing but what ckpt names; and of the names it lists, those that left the
 * temporary tree are the ones moved up, and go. Anything else leaves the directory as it is (a pull
 * then finds it not empty).
 */
async function removeAbandonedMove(dest: string): Promise<void> {
  const prefix = siblingPrefix(dest);
  // Ours: a regular file of a sane size, and a real directory, both this user's (not a FIFO that
  // would block the read, nor what another user planted in a shared directory).
  const mine = (info: Stats | undefined, kind: 'file' | 'directory') =>
    info !== undefined && info.uid === process.geteuid?.() && (kind === 'file' ? info.isFile() && info.size <= MARKER_LIMIT : info.isDirectory());
  if (!mine(await lstat(marker(dest)).catch(() => undefined), 'file')) return;
  let left: z.infer<typeof MarkerSchema>;
  try {
    left = MarkerSchema.parse(JSON.parse(await readFile(marker(dest), 'utf8')));
  } catch {
    return;
  }
  if (ownedBy(left.temp, prefix) !== left.holder || isRunning(left.holder)) return;
  const temp = join(dest, left.temp);
  const info = await lstat(temp).catch(() => undefined);
  if (!info) {
    // The move was done; only the marker was left.
    await rm(marker(dest), { force: true });
    return;
  }
  const entries = mine(info, 'directory') ? await readdir(temp).catch(() => undefined) : undefined;
  if (!entries) return;
  const stillThere = new Set(entries);
  // Never another pull's tree or marker, which share the prefix.
  const moved = new Set(left.names.filter((name) => PLAIN_NAME.test(name) && !name.startsWith(prefix) && !stillThere.has(name)));
  if ((await readdir(dest)).some((name) => !name.startsWith(prefix) && !moved.has(name))) return;
  for (const name of moved) await rm(join(dest, name), { recursive: true, force: true }).catch(() => undefined);
  await rm(marker(dest), { force: true });
}

/** A marker lists the top of one checkpoint tree: a few dozen names. */
const MARKER_LIMIT = 1 << 20;

/** A name within one directory: not empty, `.`, `..`, nor a path. */
const PLAIN_NAME = /^(?!\.{1,2}$)[^/]+$/;
