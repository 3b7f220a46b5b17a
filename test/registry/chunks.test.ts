import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ChunkReader } from '../../src/registry/chunks.js';

/** `data` cut into pieces of the given sizes, in turn. */
function pieces(data: Buffer, sizes: number[]): Readable {
  const out: Buffer[] = [];
  for (let at = 0, i = 0; at < data.length; i++) {
    const size = sizes[i % sizes.length] as number;
    out.push(data.subarray(at, at + size));
    at += size;
  }
  return Readable.from(out);
}

describe('ChunkReader', () => {
  it('cuts any pieces into exact chunks, the last shorter, then empty', async () => {
    const data = randomBytes(10_000);
    const reader = new ChunkReader(pieces(data, [1, 333, 4096, 7]));
    const lengths: number[] = [];
    const copies: Buffer[] = [];
    for (;;) {
      const chunk = await reader.read(1024);
      lengths.push(chunk.length);
      copies.push(Buffer.from(chunk));
      if (chunk.length < 1024) break;
    }
    expect(lengths).toEqual([...Array(9).fill(1024), 784]);
    expect(Buffer.concat(copies)).toEqual(data);
    expect(reader.done).toBe(true);
    expect((await reader.read(1024)).length).toBe(0);
  });

  it('does not touch the chunk on the wire while it reads the next one', async () => {
    const data = randomBytes(3 * 4096);
    const reader = new ChunkReader(pieces(data, [1000]));
    const first = await reader.read(4096);
    const second = await reader.read(4096);
    expect(first).toEqual(data.subarray(0, 4096));
    expect(second).toEqual(data.subarray(4096, 8192));
  });

  it('ends a blob of exactly one chunk with an empty one', async () => {
    const data = randomBytes(2048);
    const reader = new ChunkReader(pieces(data, [2048]));
    expect(await reader.read(2048)).toEqual(data);
    expect((await reader.read(2048)).length).toBe(0);
    expect(reader.done).toBe(true);
  });
});
