import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, lstat, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll } from 'vitest';

/**
 * The project's shared fixtures: $CKPT_FIXTURES, else `shared/fixtures` beside the checkout, else
 * where this project's machines keep them (a clone made anywhere else still finds them).
 */
export const FIXTURES =
  process.env.CKPT_FIXTURES ??
  [new URL('../../../shared/fixtures/', import.meta.url).pathname, '/work/shared/fixtures/'].find((dir) => existsSync(dir)) ??
  '/work/shared/fixtures/';
export const fixture = (name: string): string => join(FIXTURES, name);

export const ARCHIVE_FIXTURES = [
  'podman-counter.tar',
  'podman-counter.tar.gz',
  'podman-counter.tar.zst',
  'crio-counter.tar',
  'containerd-counter.tar',
] as const;

/** A temporary directory removed when the test file ends. */
const made: string[] = [];
afterAll(async () => {
  await Promise.all(made.map((dir) => rm(dir, { recursive: true, force: true })));
});
export async function tempDir(prefix = 'ckpt-test-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}

/** Extracts an archive fixture with the system tar (GNU tar understands every compression). */
export async function extractFixture(name: string): Promise<string> {
  const dir = await tempDir('ckpt-fixture-');
  await execa('tar', ['-xaf', fixture(name), '-C', dir]);
  return dir;
}

/** What a user compares between two checkpoint trees: type, permissions, owner, time and content. */
export interface TreeItem {
  type: 'file' | 'dir' | 'symlink';
  mode: number;
  uid: number;
  gid: number;
  /** Modification time of files, in whole seconds (tar keeps seconds). */
  mtime?: number;
  sha256?: string;
  linkname?: string;
}

/** Every entry under a directory with its type, permission bits and content hash. */
export async function treeOf(root: string): Promise<Map<string, TreeItem>> {
  const items = new Map<string, TreeItem>();
  const walk = async (rel: string) => {
    for (const name of (await readdir(join(root, rel))).sort()) {
      const path = rel ? `${rel}/${name}` : name;
      const full = join(root, path);
      const info = await lstat(full, { bigint: true });
      const common = { mode: Number(info.mode & 0o7777n), uid: Number(info.uid), gid: Number(info.gid) };
      if (info.isDirectory()) {
        items.set(path, { type: 'dir', ...common });
        await walk(path);
      } else if (info.isSymbolicLink()) {
        items.set(path, { type: 'symlink', ...common, linkname: await readlink(full) });
      } else {
        const sha256 = createHash('sha256').update(await readFile(full)).digest('hex');
        items.set(path, { type: 'file', ...common, mtime: Number(info.mtimeNs / 1_000_000_000n), sha256 });
      }
    }
  };
  await walk('');
  return items;
}

/** The CLI as a user runs it (the package is built before the tests run). */
export const CKPT = new URL('../../dist/cli/ckpt.js', import.meta.url).pathname;
export function ckpt(args: string[], options: { input?: string; env?: Record<string, string> } = {}) {
  return execa('node', [CKPT, ...args], { reject: false, input: options.input, env: options.env });
}
