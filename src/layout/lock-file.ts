import { type BigIntStats, readlinkSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { readdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fromSystemError } from '../errors.js';
import { createWhole } from '../fs/create-whole.js';

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

/** The pid namespace's inode: pids mean something only within one namespace. */
const PID_NAMESPACE = (() => {
  try {
    return /\[(\d+)\]/.exec(readlinkSync('/proc/self/ns/pid'))?.[1] ?? '';
  } catch {
    return '';
  }
})();

/** This process, as locks and marks name it: `<pid>` and, where known, `@<pid namespace>`. */
export const HOLDER = PID_NAMESPACE ? `${process.pid}@${PID_NAMESPACE}` : String(process.pid);

/** What follows a prefix in an ownedName(): the holder, captured, and a uuid. */
const OWNED_RE = /^(\d+(?:@\d+)?)\.[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** A name for what this process writes and may leave behind if killed: `<HOLDER>.<uuid>`. */
export function ownedName(): string {
  return `${HOLDER}.${randomUUID()}`;
}

/**
 * Deletes the entries of `where` named `<prefix><ownedName()>` whose process is gone: what a killed
 * process left. Only names of exactly that making (a user's `<prefix>backup` stays), and never what
 * a running process, or one in another pid namespace, holds. Best effort.
 */
export async function removeOrphans(where: string, prefix: string): Promise<void> {
  for (const name of await readdir(where).catch(() => [])) {
    const holder = ownedBy(name, prefix);
    if (holder !== undefined && !isRunning(holder)) await rm(join(where, name), { recursive: true, force: true }).catch(() => undefined);
  }
}

/** The holder a name `<prefix><ownedName()>` was made by; undefined for any other name. */
export function ownedBy(name: string, prefix: string): string | undefined {
  return name.startsWith(prefix) ? OWNED_RE.exec(name.slice(prefix.length))?.[1] : undefined;
}

/**
 * Whether the process a HOLDER names is running. One in another pid namespace (ckpt in another
 * container sharing the directory) cannot be checked, and counts as running.
 */
export function isRunning(name: string): boolean {
  const [pid, namespace] = name.split('@');
  if (namespace !== undefined && namespace !== PID_NAMESPACE) return true;
  const n = Number(pid);
  return !Number.isInteger(n) || n <= 0 || isAlive(n);
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
