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
