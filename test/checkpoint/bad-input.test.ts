import { chmod, copyFile, link, mkdir, readFile, readdir, stat, symlink, truncate, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { build } from '../../src/commands/build.js';
import { inspect } from '../../src/commands/inspect.js';
import { pull } from '../../src/commands/pull.js';
import { push } from '../../src/commands/push.js';
import { type ErrorCode, isCkptError } from '../../src/errors.js';
import { writeTar } from '../helpers/archives.js';
import { CKPT, ckpt, extractFixture, fixture, tempDir } from '../helpers/tree.js';

async function failure(promise: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await promise;
  } catch (err) {
    return err as Error & { code?: string };
  }
  throw new Error('expected a failure');
}

/** Builds, then pushes, into a fresh layout path and checks that each failure left no layout behind. */
async function buildFails(source: string, code: ErrorCode, message: RegExp): Promise<void> {
  for (const command of [build, push]) {
    const layout = join(await tempDir(), 'layout');
    const err = await failure(command(source, `oci:${layout}:t`, { hostInfo: false }));
    expect(isCkptError(err, code), `${command.name}: ${err.message}`).toBe(true);
    expect(err.message).toMatch(message);
    expect(err.message.startsWith(source), 'the message names the input first').toBe(true);
    await expect(stat(layout), `${command.name} left ${layout}`).rejects.toThrow(/ENOENT/);
  }
}

describe('bad checkpoint archives', () => {
  it('a truncated archive', async () => {
    const path = join(await tempDir(), 'truncated.tar');
    await copyFile(fixture('podman-counter.tar'), path);
    await truncate(path, 600_000);
    await buildFails(path, 'CORRUPT_ARCHIVE', /truncated or corrupt archive/);
  });

  it('a truncated zstd archive', async () => {
    const path = join(await tempDir(), 'truncated.tar.zst');
    await copyFile(fixture('podman-counter.tar.zst'), path);
    await truncate(path, 400_000);
    await buildFails(path, 'CORRUPT_ARCHIVE', /truncated or corrupt/);
  });

  it('a gzip archive with corrupt bytes', async () => {
    const path = join(await tempDir(), 'corrupt.tar.gz');
    const bytes = await readFile(fixture('podman-counter.tar.gz'));
    bytes.fill(0x55, 200_000, 200_400);
    await writeFile(path, bytes);
    await buildFails(path, 'CORRUPT_ARCHIVE', /truncated or corrupt/);
  });

  it('an unknown compression', async () => {
    const path = join(await tempDir(), 'checkpoint.tar.xz');
    await execa('sh', ['-c', `xz -c < ${fixture('podman-counter.tar')} > ${path} || printf '\\3757zXZ\\0 not really' > ${path}`]);
    await buildFails(path, 'UNKNOWN_COMPRESSION', /not a tar archive, nor gzip- or zstd-compressed/);
  });

  it('an empty file', async () => {
    const path = join(await tempDir(), 'empty.tar');
    await writeFile(path, '');
    await buildFails(path, 'CORRUPT_ARCHIVE', /empty file/);
  });

  it('a file given twice (an archive appended to with tar -r), which would give an image its own pull refuses', async () => {
    const dir = await extractFixture('podman-counter.tar');
    const path = join(await tempDir(), 'appended.tar');
    await execa('tar', ['-cf', path, '-C', dir, '.']);
    await execa('tar', ['-rf', path, '-C', dir, './checkpoint/pages-2.img']);
    await buildFails(path, 'UNSUPPORTED', /entry "checkpoint\/pages-2.img" is in the checkpoint twice/);
  });

  it('a hard link to a memory pages file, which would land in another layer than its file', async () => {
    const dir = await extractFixture('podman-counter.tar');
    await link(join(dir, 'checkpoint/pages-1.img'), join(dir, 'checkpoint/pages-9.img'));
    const path = join(await tempDir(), 'linked.tar');
    await execa('tar', ['-cf', path, '-C', dir, '.']);
    await buildFails(path, 'UNSUPPORTED', /entry "checkpoint\/pages-9.img" is a hard link to "checkpoint\/pages-1.img", which is not a file before it in the same layer/);
  });

  it('a hard link within one layer is kept, a link to that link too, and the image pulls', async () => {
    const dir = await extractFixture('podman-counter.tar');
    await link(join(dir, 'config.dump'), join(dir, 'config.dump.orig'));
    const path = join(await tempDir(), 'linked.tar');
    await execa('tar', ['-cf', path, '-C', dir, '.']);
    // GNU tar links every name to the first; other writers chain them, which a pull accepts.
    const chained = join(await tempDir(), 'chained.tar');
    await writeTar(chained, [{ name: './config.dump.again', type: 'link', linkname: './config.dump.orig' }]);
    await execa('tar', ['-Af', path, chained]);
    const layout = join(await tempDir(), 'layout');
    await build(path, `oci:${layout}:t`, { hostInfo: false });
    const out = join(await tempDir(), 'out');
    await pull(`oci:${layout}:t`, out);
    const [a, b, c] = await Promise.all(['config.dump', 'config.dump.orig', 'config.dump.again'].map((name) => stat(join(out, name))));
    expect([b?.ino, c?.ino]).toEqual([a?.ino, a?.ino]);
  });

  it('an archive without a CRIU inventory', async () => {
    const path = join(await tempDir(), 'no-inventory.tar');
    await writeTar(path, [{ name: 'config.dump', content: '{}' }, { name: 'checkpoint/', type: 'directory' }]);
    await buildFails(path, 'NOT_CHECKPOINT', /no CRIU inventory\.img/);
  });
});

describe('hostile tar entries', () => {
  const cases: Array<[string, Parameters<typeof writeTar>[1], RegExp]> = [
    ['dot-dot traversal', [{ name: 'checkpoint/../../etc/cron.d/evil', content: 'x' }], /climbs out of the tree/],
    ['absolute path', [{ name: '/etc/passwd', content: 'x' }], /absolute path/],
    ['symlink pointing outside', [{ name: 'checkpoint', type: 'symlink', linkname: '../../../etc' }], /links outside the tree/],
    ['absolute symlink', [{ name: 'spec.dump', type: 'symlink', linkname: '/etc/shadow' }], /links to the absolute path/],
    ['hard link to outside', [{ name: 'x', type: 'link', linkname: '../outside' }], /links outside the tree/],
    ['device node', [{ name: 'checkpoint/dev', type: 'character-device' }], /character-device/],
  ];
  for (const [attack, items, message] of cases) {
    it(attack, async () => {
      const path = join(await tempDir(), `${attack.replace(/\W+/g, '-')}.tar`);
      await writeTar(path, items);
      await buildFails(path, 'UNSAFE_PATH', message);
    });
  }
});

describe('bad checkpoint directories and metadata', () => {
  it('a file name that is not UTF-8 is refused, not looked for under another name', async () => {
    const dir = await extractFixture('podman-counter.tar');
    await writeFile(Buffer.concat([Buffer.from(join(dir, 'caf')), Buffer.from([0xe9])]), 'x');
    await buildFails(dir, 'UNSAFE_PATH', /"caf\uFFFD" is not valid UTF-8/);
  });

  it('a valid name holding U+FFFD, and a link to a name that is not UTF-8, are refused by build as pull refuses them', async () => {
    const named = await extractFixture('podman-counter.tar');
    await writeFile(join(named, 'note\uFFFD.txt'), 'x');
    await buildFails(named, 'UNSAFE_PATH', /"note\uFFFD.txt" is not valid UTF-8 \(or holds U\+FFFD\)/);
    const linked = await extractFixture('podman-counter.tar');
    await symlink(Buffer.concat([Buffer.from('caf'), Buffer.from([0xe9])]), join(linked, 'link'));
    await buildFails(linked, 'UNSAFE_PATH', /entry "link" links to a name that is not valid UTF-8/);
  });

  it('a directory that is not a checkpoint', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, 'notes.txt'), 'hello');
    await buildFails(dir, 'NOT_CHECKPOINT', /no CRIU inventory\.img/);
  });

  for (const file of ['config.dump', 'spec.dump']) {
    it(`broken ${file} JSON, named without quoting the environment around the fault`, async () => {
      const dir = await extractFixture('podman-counter.tar');
      await writeFile(join(dir, file), '{"id": "abc", ');
      await buildFails(dir, 'INVALID_METADATA', new RegExp(`${file.replace('.', '\\.')}: broken JSON`));
      await writeFile(join(dir, file), '{"process": {"env": ["PATH=/bin", DB_PASSWORD=hunter2]}}');
      const err = await failure(inspect(dir));
      expect(err.message).toMatch(new RegExp(`${file.replace('.', '\\.')}: broken JSON`));
      expect(err.message).not.toMatch(/hunter2|DB_PASS/);
    });
  }

  it('a corrupt CRIU image', async () => {
    const dir = await extractFixture('crio-counter.tar');
    await writeFile(join(dir, 'checkpoint', 'pstree.img'), Buffer.from([1, 2, 3, 4, 5, 6, 7, 8, 9]));
    await buildFails(dir, 'INVALID_METADATA', /pstree\.img/);
  });

  it('a rootfs-diff.tar that is not a tar, and metadata files too large to read whole: exit 3, one line, no layout', async () => {
    const notTar = await extractFixture('podman-counter.tar');
    await writeFile(join(notTar, 'rootfs-diff.tar'), 'garbage\n');
    await buildFails(notTar, 'INVALID_METADATA', /rootfs-diff\.tar is not a readable tar/);
    const huge = await extractFixture('podman-counter.tar');
    await truncate(join(huge, 'deleted.files'), 65 << 20);
    await buildFails(huge, 'INVALID_METADATA', /deleted\.files is larger than 64 MiB/);
    // Parsed, JSON takes tens of times its size: the container's dumps are held to 4 MiB.
    const hugeSpec = await extractFixture('podman-counter.tar');
    await truncate(join(hugeSpec, 'spec.dump'), (4 << 20) + 1);
    await buildFails(hugeSpec, 'INVALID_METADATA', /spec\.dump is larger than 4 MiB/);
    await expect(inspect(hugeSpec)).rejects.toMatchObject({ code: 'INVALID_METADATA', message: expect.stringContaining('spec.dump is larger than 4 MiB') });
    // Just under the bound, a spec.dump of real JSON builds.
    const bigSpec = await extractFixture('podman-counter.tar');
    const spec = JSON.parse(await readFile(join(bigSpec, 'spec.dump'), 'utf8')) as { annotations: Record<string, string> };
    const padding = Array.from({ length: 40_000 }, (_, i) => [`example.com/note-${i}`, 'x'.repeat(64)]);
    spec.annotations = { ...spec.annotations, ...Object.fromEntries(padding) };
    const text = JSON.stringify(spec);
    expect(text.length).toBeGreaterThan(3.5 * 2 ** 20);
    expect(text.length).toBeLessThan(4 * 2 ** 20);
    await writeFile(join(bigSpec, 'spec.dump'), text);
    await expect(build(bigSpec, `oci:${join(await tempDir(), 'layout')}:t`, { hostInfo: false })).resolves.toBeDefined();
    // The CLI: before, the scan's failure went unhandled and ended the process (exit 1).
    for (const dir of [notTar, huge, hugeSpec]) {
      const out = join(await tempDir(), 'layout');
      const run = await ckpt(['build', dir, `oci:${out}:t`, '--no-host-info']);
      expect(run.exitCode, run.stderr).toBe(3);
      expect(run.stderr.trim().split('\n')).toHaveLength(1);
      await expect(stat(out)).rejects.toThrow(/ENOENT/);
    }
  });

  it('a missing source', async () => {
    const err = await failure(inspect('/nonexistent/checkpoint.tar'));
    expect(isCkptError(err, 'NOT_FOUND')).toBe(true);
    expect(err.message).toBe('/nonexistent/checkpoint.tar: no such file or directory');
    // A layout is named as the user wrote it: oci:, and the whole path.
    const layout = await failure(inspect('oci:./nonexistent-layout:t'));
    expect(layout.message).toBe(`oci:${resolve('nonexistent-layout')}: no OCI image layout here`);
  });

  it('an unreadable archive (a kubelet archive is mode 0600, root-owned)', async () => {
    const dir = await tempDir();
    await chmod(dir, 0o777);
    const path = join(dir, 'checkpoint.tar');
    await copyFile(fixture('crio-counter.tar'), path);
    await chmod(path, 0o600);
    const out = join(dir, 'out');
    const run = await execa('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'node', CKPT, 'build', path, `oci:${out}:t`], {
      reject: false,
    });
    expect(run.stderr).toBe(`ckpt: ${path}: permission denied`);
    expect(run.exitCode).toBe(8);
    await expect(stat(out)).rejects.toThrow(/ENOENT/);
  });
});

describe('bad destinations', () => {
  it('a directory that exists but is not a layout, or a file, is in the way and left untouched (exit 8)', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, 'precious.txt'), 'keep me');
    for (const destination of [dir, join(dir, 'precious.txt'), join(dir, 'precious.txt', 'layout')]) {
      const err = await failure(build(fixture('crio-counter.tar'), `oci:${destination}:t`));
      expect(isCkptError(err, 'DESTINATION_EXISTS'), err.message).toBe(true);
      expect(err.message).toBe(`oci:${destination}: is in the way: it is not an OCI image layout, nor an empty directory`);
    }
    expect(await readdir(dir)).toEqual(['precious.txt']);
    expect(await readFile(join(dir, 'precious.txt'), 'utf8')).toBe('keep me');
  });

  it('a layout that cannot be made says permission denied (exit 8)', async () => {
    const dir = await tempDir();
    await chmod(dir, 0o555);
    const out = join(dir, 'layout');
    for (const command of [['build', fixture('crio-counter.tar'), `oci:${out}:t`, '--no-host-info'], ['copy', `oci:${fixture('podman-image-layout')}:counter-ckpt`, `oci:${out}:t`]]) {
      const run = await execa('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'node', CKPT, ...command], { reject: false });
      expect(run.stderr).toBe(`ckpt: oci:${out}: permission denied`);
      expect(run.exitCode).toBe(8);
    }
  });

  it('a failed build into an existing layout adds no tag', async () => {
    const layout = join(await tempDir(), 'layout');
    await build(fixture('crio-counter.tar'), `oci:${layout}:good`, { hostInfo: false });
    const before = await readFile(join(layout, 'index.json'), 'utf8');
    const broken = join(await tempDir(), 'broken.tar');
    await writeTar(broken, [{ name: 'config.dump', content: '{}' }]);
    await failure(build(broken, `oci:${layout}:bad`, { hostInfo: false }));
    expect(await readFile(join(layout, 'index.json'), 'utf8')).toBe(before);
    expect((await readdir(layout)).sort()).toEqual(['blobs', 'index.json', 'oci-layout']);
  });

  it('a digest as build destination is a usage error', async () => {
    const { exitCode, stderr } = await ckpt(['build', fixture('crio-counter.tar'), `oci:/tmp/x@sha256:${'a'.repeat(64)}`]);
    expect(exitCode).toBe(2);
    expect(stderr).toMatch(/a build destination takes a tag, not a digest/);
  });

  it('a destination inside a missing parent is created, and removed again on failure', async () => {
    const parent = await tempDir();
    await mkdir(join(parent, 'a'));
    const broken = join(parent, 'broken.tar');
    await writeTar(broken, [{ name: 'x/../../y', content: '' }]);
    await failure(build(broken, `oci:${join(parent, 'a', 'layout')}:t`));
    expect(await readdir(join(parent, 'a'))).toEqual([]);
  });
});
