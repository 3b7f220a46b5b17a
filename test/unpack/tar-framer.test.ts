import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { TreeEntry } from '../../src/checkpoint/entry.js';
import { readTar, treeEntry } from '../../src/tar/read.js';
import { decodeHeader, TarFramer } from '../../src/unpack/tar-framer.js';
import { rejection } from '../helpers/rejection.js';
import { type TarSpec, tarOf } from '../tar/build-tar.js';

interface Read {
  entry: TreeEntry;
  content: string;
}

/** What readTar() makes of a tar: the reference the framer must agree with. */
async function viaReadTar(tar: Buffer): Promise<Read[]> {
  const out: Read[] = [];
  for await (const { entry, open } of readTar(Readable.from([tar]), 'layer')) {
    const chunks: Buffer[] = [];
    for await (const chunk of open?.() ?? []) chunks.push(chunk as Buffer);
    out.push({ entry, content: Buffer.concat(chunks).toString('latin1') });
  }
  return out;
}

/** The same through the framer, the tar handed over in pieces of `piece` bytes, each overwritten once taken. */
async function viaFramer(tar: Buffer, piece: number): Promise<Read[]> {
  const framer = new TarFramer('layer');
  const buffer = Buffer.alloc(piece);
  const out: Read[] = [];
  let current: Read | undefined;
  for (let at = 0; at < tar.length; at += piece) {
    const n = tar.copy(buffer, 0, at, at + piece);
    framer.feed(buffer.subarray(0, n));
    for (let frame = framer.next(); frame; frame = framer.next()) {
      if (frame.kind === 'header') {
        const header = await decodeHeader(frame.header, 'layer');
        const entry = treeEntry(header, 'layer');
        framer.content(header.type === 'directory' ? 0 : header.size);
        current = entry ? { entry, content: '' } : undefined;
        if (current) out.push(current);
      } else if (current) {
        current.content += Buffer.from(frame.bytes).toString('latin1');
      }
    }
    buffer.fill(0xee); // what the framer gave out must not be needed any more
  }
  framer.end();
  return out;
}

const LONG = `${'deep/'.repeat(40)}pages-1.img`;
const ENTRIES: TarSpec[] = [
  { name: './', type: 'directory' },
  { name: 'checkpoint/', type: 'directory', mode: 0o700, mtime: new Date('2026-01-01T00:00:00Z') },
  { name: 'checkpoint/pages-1.img', body: Buffer.alloc(70_000, 0x5a) },
  { name: 'checkpoint/empty', body: '' },
  { name: 'checkpoint/odd', body: 'x'.repeat(513) },
  { name: LONG, body: 'long path, in a PAX header' },
  { name: 'naïve-ünïcode', body: 'PAX too' },
  { name: 'link', type: 'symlink', linkname: 'checkpoint/odd' },
  { name: 'hard', type: 'link', linkname: 'checkpoint/odd' },
  { name: 'last', body: 'end' },
];

describe('TarFramer', () => {
  it('gives the entries and contents readTar gives, however the bytes are cut', async () => {
    const tar = await tarOf(ENTRIES);
    const expected = await viaReadTar(tar);
    expect(expected.map((r) => r.entry.path)).toContain(LONG);
    for (const piece of [1, 7, 511, 512, 513, 4096, 65_536, tar.length]) {
      expect(await viaFramer(tar, piece)).toEqual(expected);
    }
  });

  it('skips zero blocks between entries, as tar-stream does', async () => {
    const one = await tarOf([{ name: 'a', body: 'a' }]);
    const two = await tarOf([{ name: 'b', body: 'b' }]);
    // `one` ends with two zero blocks; entries after them are still read.
    const tar = Buffer.concat([one, two]);
    expect((await viaFramer(tar, 100)).map((r) => r.entry.path)).toEqual((await viaReadTar(tar)).map((r) => r.entry.path));
  });

  it('carries a global PAX header on to the PAX records of later entries, as tar-stream does', async () => {
    // tar-stream merges the global records into an entry's own PAX records, and only then.
    const tar = Buffer.concat([
      paxHeader('g', { path: 'from-global' }),
      await tarOf([{ name: 'first', body: 'x' }]),
      paxHeader('x', { comment: 'local' }),
      await tarOf([{ name: 'second', body: 'y' }]),
    ]);
    const framed = await viaFramer(tar, 300);
    expect(framed).toEqual(await viaReadTar(tar));
    expect(framed.map((r) => r.entry.path)).toEqual(['first', 'from-global']);
  });

  it('refuses a tar cut inside an entry, as readTar does', async () => {
    const tar = await tarOf(ENTRIES);
    for (const cut of [100, 1024 + 300, 5000]) {
      const err = await rejection(viaFramer(tar.subarray(0, cut), 512));
      expect(err.code).toBe('CORRUPT_ARCHIVE');
      expect((await rejection(viaReadTar(tar.subarray(0, cut)))).code).toBe('CORRUPT_ARCHIVE');
    }
  });

  it('refuses a broken header with the message tar-stream gives', async () => {
    const tar = await tarOf([{ name: 'a', body: 'a' }]);
    tar[10] = 0x41; // the checksum no longer matches
    const err = await rejection(viaFramer(tar, 512));
    expect(err.code).toBe('CORRUPT_ARCHIVE');
    expect(err.message).toContain('Invalid tar header');
  });

  it('refuses an extended header beyond 4 MiB before reading it', async () => {
    const huge = paxHeader('x', { comment: 'x'.repeat(100) });
    huge.write('77777777777 ', 124, 'latin1'); // a size of 8 GiB
    fixChecksum(huge);
    const err = await rejection(viaFramer(huge, 512));
    expect(err.code).toBe('CORRUPT_ARCHIVE');
    expect(err.message).toContain('Header exceeds max size');
  });
});

/** A PAX header of `type` ('x' or 'g') holding `records`, with its content padded to a block. */
function paxHeader(type: 'x' | 'g', records: Record<string, string>): Buffer {
  const body = Object.entries(records)
    .map(([key, value]) => {
      const line = ` ${key}=${value}\n`;
      let length = line.length + 1;
      if (String(length).length + line.length !== length) length = String(length + 1).length + line.length;
      return `${length}${line}`;
    })
    .join('');
  const block = Buffer.alloc(512);
  block.write('PaxHeader', 0, 'latin1');
  block.write('0000644 ', 100, 'latin1');
  block.write(`${Buffer.byteLength(body).toString(8).padStart(11, '0')} `, 124, 'latin1');
  block.write('00000000000 ', 136, 'latin1');
  block.write(type, 156, 'latin1');
  block.write('ustar\x0000', 257, 'latin1');
  fixChecksum(block);
  const content = Buffer.alloc(Math.ceil(Buffer.byteLength(body) / 512) * 512);
  content.write(body, 0, 'utf8');
  return Buffer.concat([block, content]);
}

function fixChecksum(block: Buffer): void {
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += block[i] as number;
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
}
