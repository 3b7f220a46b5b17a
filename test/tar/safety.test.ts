import { describe, expect, it } from 'vitest';
import { isCkptError } from '../../src/errors.js';
import { assertSafeLink, safeEntryPath } from '../../src/tar/safety.js';

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
