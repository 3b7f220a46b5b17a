import { open } from 'node:fs/promises';
import type { FileRegion } from '../../src/checkpoint/entry.js';

/** The bytes of a region, read as a page worker reads them: by offset, nothing else. */
export async function regionBytes(region: FileRegion, size: number): Promise<Buffer> {
  const handle = await open(region.path);
  try {
    const bytes = Buffer.alloc(size);
    const { bytesRead } = await handle.read(bytes, 0, size, region.offset);
    return bytes.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}
