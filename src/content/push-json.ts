import { Readable } from 'node:stream';
import { sha256 } from '../oci/digest.js';
import type { Descriptor } from '../oci/schemas.js';
import type { Store, TransferOptions } from './target.js';

/** A small JSON document (config, manifest, index) serialised, with its descriptor. */
export function jsonBlob(mediaType: string, value: unknown): { desc: Descriptor; bytes: Buffer } {
  const bytes = Buffer.from(JSON.stringify(value));
  return { desc: { mediaType, digest: sha256(bytes), size: bytes.length }, bytes };
}

/** Serialises a small JSON document and pushes it; returns its descriptor and bytes. */
export async function pushJson(
  store: Store,
  mediaType: string,
  value: unknown,
  options: TransferOptions = {},
): Promise<{ desc: Descriptor; bytes: Buffer }> {
  const blob = jsonBlob(mediaType, value);
  await store.push(blob.desc, Readable.from([blob.bytes]), options);
  return blob;
}
