import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { describe, expect, it } from 'vitest';
import { compressionLevel, compressor, decompressor, detectCompression } from '../../src/compress/codec.js';
import { isCkptError } from '../../src/errors.js';

const data = Buffer.from('checkpoint pages '.repeat(10_000));

describe('codec', () => {
  it.each(['zstd', 'gzip', 'none'] as const)('%s round-trips and is detected by its magic', async (kind) => {
    const packed = await buffer(Readable.from([data]).pipe(compressor(kind)));
    if (kind !== 'none') expect(detectCompression(packed)).toBe(kind);
    if (kind !== 'none') expect(packed.length).toBeLessThan(data.length / 10);
    expect(await buffer(Readable.from([packed]).pipe(decompressor(kind)))).toEqual(data);
  });

  it('zstd decompression waits for its reader: 1 GiB of zeros never piles up in memory', async () => {
    // 1 GiB of empty memory pages compresses to ~32 KiB: one input chunk expands to all of it.
    const zeros = Buffer.alloc(1 << 20);
    const packed = await buffer(Readable.from((function* () { for (let i = 0; i < 1024; i++) yield zeros; })()).pipe(compressor('zstd', 1, 0)));
    expect(packed.length).toBeLessThan(64 * 1024);
    const unpacking = Readable.from([packed]).pipe(decompressor('zstd'));
    let total = 0;
    let most = 0;
    for await (const chunk of unpacking) {
      total += (chunk as Buffer).length;
      // What was handed over at once (the iterator takes all that is buffered) and what waits behind it.
      most = Math.max(most, (chunk as Buffer).length + unpacking.readableLength);
      // A slow reader: what is not read must wait in zstd, not in the stream's buffer.
      if (total % (64 << 20) === 0) await new Promise((wake) => setImmediate(wake));
    }
    expect(total).toBe(1 << 30);
    expect(most).toBeLessThanOrEqual(1 << 20);
  });

  it('zstd decompression reports data cut inside a frame', async () => {
    const packed = await buffer(Readable.from([data]).pipe(compressor('zstd')));
    await expect(buffer(Readable.from([packed.subarray(0, packed.length - 10)]).pipe(decompressor('zstd')))).rejects.toThrow(/ends inside a zstd frame/);
  });

  it('gives identical bytes for identical input (reproducible builds)', async () => {
    const a = await buffer(Readable.from([data]).pipe(compressor('zstd')));
    const b = await buffer(Readable.from([data.subarray(0, 7), data.subarray(7)]).pipe(compressor('zstd')));
    expect(a).toEqual(b);
  });

  it('recognises a tar by its ustar magic and nothing else', () => {
    const header = Buffer.alloc(512);
    header.write('ustar', 257, 'latin1');
    expect(detectCompression(header)).toBe('none');
    expect(detectCompression(Buffer.from('PK\x03\x04 a zip file'))).toBe('unknown');
    expect(detectCompression(Buffer.alloc(0))).toBe('unknown');
  });

  it('rejects a level out of range, and any level for uncompressed layers', () => {
    const thrown = (f: () => unknown): unknown => {
      try {
        f();
      } catch (err) {
        return err;
      }
      return undefined;
    };
    expect(() => compressor('gzip', 12)).toThrow(/1 to 9/);
    expect(isCkptError(thrown(() => compressor('zstd', 0)), 'USAGE')).toBe(true);
    const none = thrown(() => compressionLevel('none', 5));
    expect(isCkptError(none, 'USAGE') && none.message).toMatch(/not to uncompressed layers/);
    expect(compressionLevel('none')).toBe(0);
  });
});
