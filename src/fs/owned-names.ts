/**
 * Names of what a process writes and may leave behind if it is killed (temporary files, locks,
 * marks): `<pid>@<pid namespace>.<uuid>`, so that a later process can tell whether their maker is
 * gone and remove them.
 */
import { readlinkSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';

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
