import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';
import { sha256 } from '../../src/oci/digest.js';
import type { Descriptor } from '../../src/oci/schemas.js';

/** Test content: random blobs with their descriptors, streams that trickle, and a stream collector. */

export function blob(size: number, mediaType = 'application/vnd.oci.image.layer.v1.tar'): { bytes: Buffer; desc: Descriptor } {
  const bytes = randomBytes(size);
  return { bytes, desc: { mediaType, digest: sha256(bytes), size } };
}

export function manifestOf(config: Descriptor, layers: Descriptor[], annotations?: Record<string, string>): { bytes: Buffer; desc: Descriptor } {
  const mediaType = 'application/vnd.oci.image.manifest.v1+json';
  const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType, config, layers, annotations }));
  return { bytes, desc: { mediaType, digest: sha256(bytes), size: bytes.length } };
}

/** A stream of `bytes` in pieces of `piece` bytes, waiting `pauseMs` between them. */
export function trickle(bytes: Buffer, piece = 64 * 1024, pauseMs = 0): Readable {
  return Readable.from(
    (async function* () {
      for (let i = 0; i < bytes.length; i += piece) {
        if (pauseMs > 0) await delay(pauseMs);
        yield bytes.subarray(i, i + piece);
      }
    })(),
    { objectMode: false },
  );
}

export async function collect(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream as AsyncIterable<Buffer>) parts.push(chunk);
  return Buffer.concat(parts);
}
