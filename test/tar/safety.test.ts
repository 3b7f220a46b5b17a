import { describe, expect, it } from 'vitest';
import { isCkptError } from '../../src/errors.js';
import { assertNotThroughLink, assertSafeLink, safeEntryPath } from '../../src/tar/safety.js';

function unsafe(fn: () => unknown): boolean {
  try {
    fn();
    return false;
  } catch (err) {
    return isCkptError(err, 'UNSAFE_PATH');
  }
}

describe('safeEntryPath', () => {
  it('normalises harmless names', () => {
    expect(safeEntryPath('./checkpoint/pages-1.img', 'a.tar')).toBe('checkpoint/pages-1.img');
    expect(safeEntryPath('checkpoint/', 'a.tar')).toBe('checkpoint');
    expect(safeEntryPath('./', 'a.tar')).toBe('');
    expect(safeEntryPath('a//b/./c', 'a.tar')).toBe('a/b/c');
  });
  it('rejects dot-dot traversal', () => expect(unsafe(() => safeEntryPath('checkpoint/../../etc/passwd', 'a.tar'))).toBe(true));
  it('rejects absolute paths', () => expect(unsafe(() => safeEntryPath('/etc/passwd', 'a.tar'))).toBe(true));
  it('rejects NUL bytes', () => expect(unsafe(() => safeEntryPath('a\0b', 'a.tar'))).toBe(true));
  it('names the archive and the entry', () => {
    expect(() => safeEntryPath('../x', 'evil.tar')).toThrow(/^evil\.tar: entry "\.\.\/x" climbs out/);
  });
});

describe('assertSafeLink', () => {
  it('accepts links that stay inside', () => {
    expect(() => assertSafeLink('a/b/link', '../c', 'symlink', 't')).not.toThrow();
    expect(() => assertSafeLink('a/link', 'a/target', 'hardlink', 't')).not.toThrow();
  });
  it('rejects a symlink escaping through ..', () => expect(unsafe(() => assertSafeLink('a/link', '../../etc', 'symlink', 't'))).toBe(true));
  it('rejects an absolute symlink', () => expect(unsafe(() => assertSafeLink('link', '/etc/shadow', 'symlink', 't'))).toBe(true));
  it('rejects a hard link to outside', () => expect(unsafe(() => assertSafeLink('a', '../outside', 'hardlink', 't'))).toBe(true));
  it('resolves hard links from the root, not the entry directory', () =>
    expect(unsafe(() => assertSafeLink('a/b/c', '../x', 'hardlink', 't'))).toBe(true));
});

describe('assertNotThroughLink', () => {
  const links = new Set(['a/b/r', 'top']);
  const check = (path: string, linkname: string) => assertNotThroughLink(path, linkname, (p) => links.has(p), 't');
  it('accepts a target that names a link last, or passes only directories', async () => {
    await expect(check('a/b/x', 'r')).resolves.toBeUndefined();
    await expect(check('a/b/x', '../../top')).resolves.toBeUndefined();
    await expect(check('a/b/x', '../c/./d/')).resolves.toBeUndefined();
  });
  it('rejects a target that goes on through a link, even back out of it', async () => {
    await expect(check('a/b/x', 'r/../../../etc')).rejects.toThrow(/^t: entry "a\/b\/x" links through the symbolic link "a\/b\/r"$/);
    await expect(check('a/b/x', '../../top/y')).rejects.toThrow(/through the symbolic link "top"/);
  });
});
