import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { link, mkdir, open, readdir, readFile, readlink, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { execa } from 'execa';
import { extract } from 'tar-stream';
import { describe, expect, it } from 'vitest';
import type { SourceEntry, TreeEntry } from '../../src/checkpoint/entry.js';
import { sniffCompression } from '../../src/checkpoint/sources/archive.js';
import { isCkptError } from '../../src/errors.js';
import { readTar } from '../../src/tar/read.js';
import { indexTar, readTarFile } from '../../src/tar/seek.js';
import { rejection } from '../helpers/rejection.js';
import { regionBytes } from '../helpers/region.js';
import { ARCHIVE_FIXTURES, extractFixture, fixture, tempDir } from '../helpers/tree.js';
import { tarOf } from './build-tar.js';

const sha256 = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');

async function digestOf(stream: Readable): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of stream) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

type Read = TreeEntry & { sha256?: string };

/** Every entry a reader yields, with its content's hash; a region is checked to hold that content. */
async function readAll(entries: AsyncIterable<SourceEntry>): Promise<Read[]> {
  const out: Read[] = [];
  for await (const { entry, open, region } of entries) {
    if (!open) {
      out.push(entry);
      continue;
    }
    const digest = await digestOf(open());
    if (region) expect(sha256(await regionBytes(region, entry.size)), entry.path).toBe(digest);
    out.push({ ...entry, sha256: digest });
  }
  return out;
}

const viaStream = (path: string): Promise<Read[]> => readAll(readTar(createReadStream(path), path));
const viaIndex = (path: string): Promise<Read[]> => readAll(readTarFile(path));

/** The headers and content offsets as tar-stream decodes them, and as the index does: the same, before any checking. */
async function expectSameHeaders(path: string): Promise<void> {
  const streamed: unknown[] = [];
  const parser = extract();
  createReadStream(path).pipe(parser);
  for await (const entry of parser) {
    const { pax, linkname, ...header } = entry.header;
    void pax;
    streamed.push({ ...header, linkname: linkname ?? undefined });
    for await (const chunk of entry) void chunk;
  }
  const indexed: unknown[] = [];
  // tar-stream's headers carry their content's offset too, untyped.
  for await (const { header, offset } of indexTar(path)) indexed.push({ linkname: undefined, ...header, byteOffset: offset });
  expect(indexed).toEqual(streamed);
}

/** The body of a PAX extended header holding `records` (`LENGTH KEY=VALUE\n`, LENGTH counting itself). */
const paxRecords = (records: Record<string, string>) =>
  Object.entries(records)
    .map(([key, value]) => {
      const record = ` ${key}=${value}\n`;
      let length = record.length + 1;
      while (`${length}${record}`.length !== length) length++;
      return `${length}${record}`;
    })
    .join('');

/** What a reader makes of an archive: its entries, or the CkptError it fails with. */
const outcome = (reads: Promise<Read[]>) =>
  reads.then(
    (entries) => ({ entries }),
    (err: unknown) => (isCkptError(err) ? { code: err.code, message: err.message } : Promise.reject(err)),
  );

/**
 * Both readers give the same entries, every file with a region. Unless `raw` is false they also
 * decode the same headers: PAX times and owners are applied after tar-stream's decoding.
 */
async function expectSameReads(path: string, raw = true): Promise<Read[]> {
  if (raw) await expectSameHeaders(path);
  const [streamed, indexed] = await Promise.all([viaStream(path), viaIndex(path)]);
  expect(indexed).toEqual(streamed);
  for await (const { entry, region } of readTarFile(path)) {
    expect(region === undefined, entry.path).toBe(entry.type !== 'file');
    if (region) expect(region.path).toBe(path);
  }
  return indexed;
}

async function writeArchive(bytes: Buffer, name = 'a.tar'): Promise<string> {
  const path = join(await tempDir(), name);
  await writeFile(path, bytes);
  return path;
}

/** Rewrites the header at `at` and seals it with a correct checksum, as a hostile writer would. */
function patchHeader(tar: Buffer, at: number, patch: (block: Buffer) => void): Buffer {
  const block = tar.subarray(at, at + 512);
  patch(block);
  block.fill(0x20, 148, 156);
  const sum = block.reduce((total, byte) => total + byte, 0);
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return tar;
}

describe('readTarFile reads what readTar reads', () => {
  const uncompressed = ARCHIVE_FIXTURES.filter((name) => name.endsWith('.tar'));

  for (const name of uncompressed) {
    it(`fixture ${name}`, async () => {
      const entries = await expectSameReads(fixture(name));
      expect(entries.length).toBeGreaterThan(10);
    });
  }

  it('the tar files inside the fixtures (rootfs-diff.tar, devshm-checkpoint.tar)', async () => {
    let inner = 0;
    for (const name of uncompressed) {
      const dir = await extractFixture(name);
      for (const file of ['rootfs-diff.tar', 'devshm-checkpoint.tar']) {
        const path = join(dir, file);
        // containerd gzips its rootfs-diff.tar.
        if ((await sniffCompression(path).catch(() => undefined)) === 'none') {
          // A root-file-system diff may hold what a checkpoint tree may not (/etc/mtab -> /proc/mounts).
          await expectSameHeaders(path);
          expect(await outcome(viaIndex(path))).toEqual(await outcome(viaStream(path)));
          inner++;
        }
      }
    }
    expect(inner).toBeGreaterThanOrEqual(3);
  });

  /** A tree with what trips tar readers: long names and link targets, links, empty and block-sized files. */
  async function trickyTree(): Promise<string> {
    const root = await tempDir('ckpt-tricky-');
    const deep = join(root, 'checkpoint', `dir-${'d'.repeat(70)}`, `sub-${'s'.repeat(50)}`);
    await mkdir(deep, { recursive: true });
    await writeFile(join(deep, 'pages-1.img'), randomBytes(3 << 20));
    await writeFile(join(root, 'checkpoint', `long-${'n'.repeat(120)}.img`), 'a name longer than 100 bytes');
    await link(join(root, 'checkpoint', `long-${'n'.repeat(120)}.img`), join(root, 'checkpoint', 'hardlink.img'));
    await symlink(`dir-${'d'.repeat(70)}/sub-${'s'.repeat(50)}/pages-1.img`, join(root, 'checkpoint', 'symlink'));
    await writeFile(join(root, 'empty'), '');
    await writeFile(join(root, 'block-sized'), Buffer.alloc(1024, 'b'));
    await writeFile(join(root, 'odd-sized'), Buffer.alloc(1000, 'o'));
    await writeFile(join(root, 'päge-ü.img'), 'utf-8');
    // More small files than one read of headers holds.
    await mkdir(join(root, 'many'));
    for (let i = 0; i < 150; i++) await writeFile(join(root, 'many', `f${i}`), `${i}`.repeat(i));
    return root;
  }

  for (const format of ['gnu', 'posix', 'ustar'] as const) {
    it(`GNU tar --format=${format}`, async () => {
      const root = await trickyTree();
      const path = join(await tempDir(), `${format}.tar`);
      // ustar has no room for a 120-byte name component (GNU L and PAX do).
      const ustarFits = [`checkpoint/dir-${'d'.repeat(70)}`, 'many', 'empty', 'block-sized', 'odd-sized'];
      await execa('tar', [`--format=${format}`, '-cf', path, '-C', root, ...(format === 'ustar' ? ustarFits : await readdir(root))]);
      const indexed = await expectSameReads(path, format !== 'posix');
      if (format === 'posix') {
        // GNU tar's PAX mtime keeps the fraction of a second, which both readers keep too.
        expect(indexed.some((e) => e.mtime.getTime() % 1000 !== 0)).toBe(true);
        // A global header (`keyword=value`) reaches the entries with PAX records of their own.
        const global = join(await tempDir(), 'global.tar');
        await execa('tar', ['--format=posix', '--pax-option=uname=everyone', '-cf', global, '-C', root, ...(await readdir(root))]);
        expect((await expectSameReads(global, false)).some((e) => e.uname === 'everyone')).toBe(true);
      }
      const paths = indexed.map((e) => e.path);
      expect(paths).toContain(`checkpoint/dir-${'d'.repeat(70)}/sub-${'s'.repeat(50)}/pages-1.img`);
      if (format !== 'ustar') {
        // Whichever of the two names tar meets first holds the content, the other links to it.
        const hardlinks = indexed.filter((e) => e.type === 'hardlink');
        const linked = hardlinks.flatMap((e) => [e.path, e.linkname]).sort();
        expect(linked).toEqual(['checkpoint/hardlink.img', `checkpoint/long-${'n'.repeat(120)}.img`]);
        expect(indexed.find((e) => e.path === 'checkpoint/symlink')).toMatchObject({
          type: 'symlink',
          linkname: `dir-${'d'.repeat(70)}/sub-${'s'.repeat(50)}/pages-1.img`,
        });
        expect(paths).toContain('päge-ü.img');
      }
      expect(indexed.find((e) => e.path === 'empty')).toMatchObject({ type: 'file', size: 0 });
      expect(indexed.filter((e) => e.path.startsWith('many/'))).toHaveLength(150);
    });
  }

  it('tar-stream archives (ustar prefix, PAX for names too long for it)', async () => {
    const path = await writeArchive(
      await tarOf([
        { name: 'checkpoint/', type: 'directory' },
        { name: `checkpoint/${'p'.repeat(90)}/${'q'.repeat(90)}.img`, body: 'split between prefix and name' },
        { name: `checkpoint/${'r'.repeat(200)}.img`, body: 'a PAX path' },
        { name: 'checkpoint/link', type: 'link', linkname: `checkpoint/${'r'.repeat(200)}.img` },
        { name: 'checkpoint/sym', type: 'symlink', linkname: `${'r'.repeat(200)}.img` },
        { name: 'checkpoint/empty.img', body: '' },
        { name: 'checkpoint/512.img', body: Buffer.alloc(512, 1) },
        { name: 'checkpoint/513.img', body: Buffer.alloc(513, 2) },
        { name: 'old-style-dir/', type: 'file', body: '' },
      ]),
    );
    const entries = await expectSameReads(path);
    expect(entries.map((e) => `${e.type}:${e.path.slice(0, 30)}:${e.size}`)).toEqual([
      'directory:checkpoint:0',
      `file:checkpoint/${'p'.repeat(19)}:29`,
      `file:checkpoint/${'r'.repeat(19)}:10`,
      'hardlink:checkpoint/link:0',
      'symlink:checkpoint/sym:0',
      'file:checkpoint/empty.img:0',
      'file:checkpoint/512.img:512',
      'file:checkpoint/513.img:513',
      'file:old-style-dir:0',
    ]);
  });

  it('GNU base-256 sizes and offsets beyond 4 GiB, without reading the content', async () => {
    // A 9 GiB entry in a sparse file: only its header and the next are ever read.
    const huge = 9 * 2 ** 30;
    const head = await tarOf([{ name: 'pages-1.img', body: 'x' }]);
    patchHeader(head, 0, (block) => {
      block.fill(0, 124, 136);
      block[124] = 0x80;
      block.writeUIntBE(huge, 136 - 6, 6);
    });
    const tail = await tarOf([{ name: 'pages-2.img', body: 'second' }]);
    const path = join(await tempDir(), 'huge.tar');
    await writeFile(path, head.subarray(0, 512));
    const handle = await open(path, 'r+');
    await handle.write(tail, 0, tail.length, 512 + huge);
    await handle.close();
    const indexed = [];
    for await (const { header, offset } of indexTar(path)) indexed.push({ name: header.name, size: header.size, offset });
    expect(indexed).toEqual([
      { name: 'pages-1.img', size: huge, offset: 512 },
      { name: 'pages-2.img', size: 6, offset: 512 + huge + 512 },
    ]);
  });

  it('a lone zero block is skipped; after two, the rest of the file is not read', async () => {
    const one = await tarOf([{ name: 'a', body: 'a' }]);
    const two = await tarOf([{ name: 'b', body: 'b' }]);
    const path = await writeArchive(
      Buffer.concat([one.subarray(0, 1024), Buffer.alloc(512), two.subarray(0, 1024), Buffer.alloc(1024), randomBytes(1000)]),
    );
    expect((await viaIndex(path)).map((e) => e.path)).toEqual(['a', 'b']);
  });

  it('an archive without its end-of-archive blocks ends after its last whole entry', async () => {
    const bytes = await tarOf([{ name: 'a', body: 'a'.repeat(600) }]);
    const path = await writeArchive(bytes.subarray(0, 512 + 1024));
    expect((await viaIndex(path)).map((e) => `${e.path}:${e.size}`)).toEqual(['a:600']);
  });

  it('PAX records for times and owners are applied to the next entry, over the newest global ones', async () => {
    const bytes = await tarOf([
      { name: 'global', body: paxRecords({ uname: 'everyone', uid: '7' }) },
      { name: 'ext', body: paxRecords({ mtime: '1790000000.123456789', uid: '4000000', gid: '5', gname: 'group' }) },
      { name: 'file.img', body: 'x', uid: 1, gid: 2 },
      { name: 'other.img', body: 'y' },
    ]);
    // Written as files, turned into a global ('g') and a per-entry ('x') extended header.
    patchHeader(bytes, 0, (block) => (block[156] = 0x67));
    patchHeader(bytes, 1024, (block) => (block[156] = 0x78));
    const path = await writeArchive(bytes);
    const headers = [];
    for await (const { header } of indexTar(path)) headers.push(header);
    expect(headers.map((h) => h.name)).toEqual(['file.img', 'other.img']);
    expect(headers[0]).toMatchObject({ uid: 4000000, gid: 5, uname: 'everyone', gname: 'group', mtime: new Date(1790000000123) });
    // As tar-stream: global records reach only an entry with PAX records of its own.
    expect(headers[1]).toMatchObject({ uid: 0, mtime: new Date(0) });
    expect(headers[1]?.uname).not.toBe('everyone');
    await expectSameReads(path, false);
  });

  it('PAX times and owners come out the same read as a stream (a compressed archive) as by offset', async () => {
    const bytes = await tarOf([
      { name: 'ext', body: paxRecords({ mtime: '1790000000.123456789', uid: '4000000', gid: '5', uname: 'someone', gname: 'group' }) },
      { name: 'file.img', body: 'x', uid: 1, gid: 2 },
      { name: 'other.img', body: 'y' },
    ]);
    patchHeader(bytes, 0, (block) => (block[156] = 0x78));
    const entries = await expectSameReads(await writeArchive(bytes), false);
    expect(entries[0]).toMatchObject({ path: 'file.img', uid: 4000000, gid: 5, uname: 'someone', gname: 'group', mtime: new Date(1790000000123) });
    expect(entries[1]).toMatchObject({ path: 'other.img', uid: 0, mtime: new Date(0) });
  });

  it('refuses a PAX record that is not a number where one must be, read either way', async () => {
    const bytes = await tarOf([
      { name: 'ext', body: paxRecords({ uid: 'many' }) },
      { name: 'file.img', body: 'x' },
    ]);
    patchHeader(bytes, 0, (block) => (block[156] = 0x78));
    const path = await writeArchive(bytes);
    for (const read of [viaStream(path), viaIndex(path)]) {
      const err = await rejection(read);
      expect(err.code).toBe('CORRUPT_ARCHIVE');
      expect(err.message).toContain('invalid PAX uid "many"');
    }
  });
});

describe('indexTar refuses broken archives as readTar does', () => {
  /** A small archive: a directory, a file of 5000 bytes, a file of 10. */
  const sample = () =>
    tarOf([
      { name: 'checkpoint/', type: 'directory' },
      { name: 'checkpoint/pages-1.img', body: Buffer.alloc(5000, 7) },
      { name: 'checkpoint/inventory.img', body: '0123456789' },
    ]);

  /** Both readers fail with the same code; the index's message is returned. */
  async function bothFail(bytes: Buffer, code: string): Promise<string> {
    const path = await writeArchive(bytes, 'broken.tar');
    const streamed = await rejection(viaStream(path));
    const indexed = await rejection(viaIndex(path));
    expect(streamed.code, streamed.message).toBe(code);
    expect(indexed.code, indexed.message).toBe(code);
    expect(indexed.message.startsWith(`${path}: `)).toBe(true);
    return indexed.message;
  }

  it('cut inside a header', async () => {
    const bytes = await sample();
    expect(await bothFail(bytes.subarray(0, 512 + 100), 'CORRUPT_ARCHIVE')).toMatch(
      /truncated or corrupt archive \(the file ends inside the header at byte 512\)/,
    );
  });

  it('cut inside an entry', async () => {
    const bytes = await sample();
    expect(await bothFail(bytes.subarray(0, 2048), 'CORRUPT_ARCHIVE')).toMatch(
      /truncated or corrupt archive \(the file ends inside the entry "checkpoint\/pages-1.img" at byte 512\)/,
    );
  });

  it('cut inside the padding after the content', async () => {
    const bytes = await sample();
    await bothFail(bytes.subarray(0, 1024 + 5000), 'CORRUPT_ARCHIVE');
  });

  it('a bad checksum', async () => {
    const bytes = await sample();
    bytes.writeUInt8(bytes.readUInt8(512 + 20) ^ 1, 512 + 20);
    expect(await bothFail(bytes, 'CORRUPT_ARCHIVE')).toMatch(/bad header checksum at byte 512/);
  });

  it('random garbage', async () => {
    expect(await bothFail(randomBytes(4096), 'CORRUPT_ARCHIVE')).toMatch(/truncated or corrupt archive/);
  });

  it('garbage with a correct checksum but no tar magic', async () => {
    const bytes = patchHeader(await sample(), 512, (block) => block.fill(0x41, 257, 265));
    expect(await bothFail(bytes, 'CORRUPT_ARCHIVE')).toMatch(/unknown header format at byte 512/);
  });

  it('a negative size (base-256)', async () => {
    const bytes = patchHeader(await sample(), 512, (block) => block.fill(0xff, 124, 136));
    expect(await bothFail(bytes, 'CORRUPT_ARCHIVE')).toMatch(/invalid size in the header at byte 512/);
  });

  it('a size that is not a number', async () => {
    const bytes = patchHeader(await sample(), 512, (block) => block.write('zzzzzzzzzzz\0', 124, 'latin1'));
    expect(await bothFail(bytes, 'CORRUPT_ARCHIVE')).toMatch(/invalid size/);
  });

  it('an absurd size, far past the end of the file', async () => {
    const bytes = patchHeader(await sample(), 512, (block) => block.write('77777777777\0', 124, 'latin1'));
    expect(await bothFail(bytes, 'CORRUPT_ARCHIVE')).toMatch(/ends inside the entry "checkpoint\/pages-1.img"/);
  });

  it('a dot-dot path', async () => {
    const bytes = await tarOf([{ name: 'checkpoint/../../etc/cron.d/evil', body: 'x' }]);
    expect(await bothFail(bytes, 'UNSAFE_PATH')).toMatch(/climbs out of the tree/);
  });

  it('a dot-dot path given by a PAX record', async () => {
    const bytes = await tarOf([{ name: `../${'x'.repeat(200)}`, body: 'x' }]);
    expect(await bothFail(bytes, 'UNSAFE_PATH')).toMatch(/climbs out of the tree/);
  });

  it('a character device', async () => {
    const bytes = await tarOf([{ name: 'checkpoint/dev', type: 'character-device' }]);
    expect(await bothFail(bytes, 'UNSAFE_PATH')).toMatch(/is a character-device, which a checkpoint never holds/);
  });
  it('a sparse file in PAX form (GNU tar --sparse --format=posix), whose content is a map and packed data', async () => {
    const dir = await tempDir();
    const file = join(dir, 'tree', 'pages-1.img');
    await mkdir(join(dir, 'tree'));
    const handle = await open(file, 'w');
    await handle.write('data', 8 << 20);
    await handle.close();
    const archive = join(dir, 'sparse.tar');
    await execa('tar', ['-S', '--format=posix', '-cf', archive, '-C', join(dir, 'tree'), '.']);
    expect(await bothFail(await readFile(archive), 'UNSUPPORTED')).toMatch(/entry ".\/pages-1.img" is a sparse file \(GNU.sparse PAX records\)/);
  });

  it('a name that is not UTF-8, which would be written under another name', async () => {
    const bytes = patchHeader(await tarOf([{ name: 'volumes/data/caf.txt', body: 'x' }]), 0, (block) => (block[16] = 0xe9));
    expect(await bothFail(bytes, 'UNSAFE_PATH')).toMatch(/is not valid UTF-8 \(or holds U\+FFFD\)/);
  });

  it('an unknown typeflag (a GNU sparse file), whose content layout is unknown', async () => {
    const bytes = patchHeader(await tarOf([{ name: 'pages-1.img', body: 'x' }]), 0, (block) => (block[156] = 0x53));
    expect(await bothFail(bytes, 'UNSAFE_PATH')).toMatch(/entry "pages-1.img" has the tar type "S" \(a sparse file: archive without tar --sparse\), which a checkpoint never holds/);
  });
});

describe('indexTar refuses what readTar lets through', () => {
  async function indexFails(bytes: Buffer) {
    const path = await writeArchive(bytes, 'broken.tar');
    return rejection(viaIndex(path));
  }

  it('an extended header that no entry follows', async () => {
    const bytes = await tarOf([{ name: `${'x'.repeat(200)}`, body: 'x' }]);
    // Keeps the PAX header, drops its entry.
    const err = await indexFails(Buffer.concat([bytes.subarray(0, 1024), Buffer.alloc(1024)]));
    expect(err.code).toBe('CORRUPT_ARCHIVE');
    expect(err.message).toMatch(/the extended header at byte 0 is followed by no entry/);
  });

  it('a malformed PAX record', async () => {
    const bytes = await tarOf([{ name: `${'x'.repeat(200)}`, body: 'x' }]);
    bytes.write('99', 512, 'latin1');
    const err = await indexFails(bytes);
    expect(err.code).toBe('CORRUPT_ARCHIVE');
    expect(err.message).toMatch(/malformed PAX record in the header at byte 0/);
  });

  it('an extended header too large to be one', async () => {
    const bytes = patchHeader(await tarOf([{ name: `${'x'.repeat(200)}`, body: 'x' }]), 0, (block) =>
      block.write(`${(8 << 20).toString(8).padStart(11, '0')}\0`, 124, 'latin1'),
    );
    const err = await indexFails(bytes);
    expect(err.code).toBe('CORRUPT_ARCHIVE');
    expect(err.message).toMatch(/an extended header of 8388608 bytes at byte 0/);
  });
});

describe('indexTar as a reader of files', () => {
  it('a missing file is NOT_FOUND', async () => {
    const err = await rejection(viaIndex('/nonexistent/a.tar'));
    expect(err.code).toBe('NOT_FOUND');
    expect(err.message).toBe('/nonexistent/a.tar: no such file or directory');
  });

  it('stops with ABORTED when its signal fires', async () => {
    const path = await writeArchive(await tarOf([{ name: 'a', body: 'a' }, { name: 'b', body: 'b' }]));
    const controller = new AbortController();
    const err = await rejection(
      (async () => {
        for await (const item of indexTar(path, controller.signal)) {
          void item;
          controller.abort();
        }
      })(),
    );
    expect(err.code).toBe('ABORTED');
  });

  it('closes the archive when the reader stops early', async () => {
    const path = await writeArchive(await tarOf([{ name: 'a', body: 'a' }, { name: 'b', body: 'b' }]));
    for await (const item of indexTar(path)) {
      void item;
      break;
    }
    const fds = await readdir('/proc/self/fd');
    const files = await Promise.all(fds.map((fd) => readlink(`/proc/self/fd/${fd}`).catch(() => '')));
    expect(files).not.toContain(path);
  });
});
