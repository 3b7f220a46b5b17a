import { posix } from 'node:path';
import { CkptError } from '../errors.js';

/**
 * Path rules for tar entries, with no file-system access: every archive ckpt reads and every layer
 * it unpacks passes through these, so a hostile name can never reach outside the tree.
 */

/**
 * Where bytes were not UTF-8 a decoder puts U+FFFD: names that differ only there would become one,
 * and what is written would not be the file named. Refused, with U+FFFD itself, wherever a name
 * comes from (a tar, a directory, a link's target), so that what build takes, pull takes.
 */
const NOT_UTF8 = 'is not valid UTF-8 (or holds U+FFFD), which ckpt does not carry';

/** A name read as bytes, as text; undefined where it is not UTF-8 or holds U+FFFD. */
export function utf8Name(bytes: Buffer): string | undefined {
  const text = bytes.toString('utf8');
  return !text.includes('\uFFFD') && Buffer.from(text, 'utf8').equals(bytes) ? text : undefined;
}

/** Refuses a name that is not UTF-8 (see utf8Name), as an entry of `subject`. */
export function notUtf8(subject: string, entry: string): CkptError {
  return unsafe(subject, entry, NOT_UTF8);
}

function unsafe(subject: string, entry: string, why: string): CkptError {
  return new CkptError('UNSAFE_PATH', `entry ${JSON.stringify(entry)} ${why}`, { subject });
}

/**
 * The entry's path relative to the tree root, without `./` or a trailing slash; `''` for the root
 * itself. Rejects absolute paths, `..` components, NUL bytes and names that were not UTF-8.
 */
export function safeEntryPath(name: string, subject: string): string {
  if (name.includes('\0')) throw unsafe(subject, name, 'contains a NUL byte');
  if (name.includes('\uFFFD')) throw notUtf8(subject, name);
  if (name.startsWith('/')) throw unsafe(subject, name, 'has an absolute path');
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw unsafe(subject, name, 'climbs out of the tree with ".."');
  return parts.join('/');
}

/** Rejects a hard-link or symbolic-link target that would resolve outside the tree. */
export function assertSafeLink(
  entryPath: string,
  linkname: string,
  kind: 'hardlink' | 'symlink',
  subject: string,
): void {
  if (linkname.includes('\0')) throw unsafe(subject, entryPath, 'links to a name with a NUL byte');
  if (linkname.includes('\uFFFD')) throw unsafe(subject, entryPath, `links to a name that ${NOT_UTF8}`);
  if (posix.isAbsolute(linkname)) {
    throw unsafe(subject, entryPath, `links to the absolute path ${JSON.stringify(linkname)}`);
  }
  // Hard-link targets are relative to the tree root, symbolic links to the link's own directory.
  const base = kind === 'hardlink' ? '.' : posix.dirname(entryPath);
  const resolved = posix.normalize(posix.join(base, linkname));
  if (resolved === '..' || resolved.startsWith('../')) {
    throw unsafe(subject, entryPath, `links outside the tree (${JSON.stringify(linkname)})`);
  }
}

/**
 * Rejects a symbolic link whose target passes through another symbolic link of the tree: `x ->
 * r/../../etc` stays inside by its text (assertSafeLink) and leaves it when `r -> ..`. Checked
 * once the tree is whole, since a link may come before the one it passes through. The last name
 * of a target may be a link: that one is checked on its own.
 */
export async function assertNotThroughLink(
  path: string,
  linkname: string,
  isSymlink: (path: string) => boolean | Promise<boolean>,
  subject: string,
): Promise<void> {
  const at = posix.dirname(path).split('/').filter((p) => p !== '.' && p !== '');
  const steps = linkname.split('/').filter((p) => p !== '' && p !== '.');
  for (const [i, step] of steps.entries()) {
    if (step === '..') at.pop();
    else at.push(step);
    const through = at.join('/');
    if (i < steps.length - 1 && step !== '..' && (await isSymlink(through))) {
      throw unsafe(subject, path, `links through the symbolic link ${JSON.stringify(through)}`);
    }
  }
}
