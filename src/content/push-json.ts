import { Readable } from 'node:stream';
import { sha256 } from '../oci/digest.js';
import type { Descriptor } from '../oci/schemas.js';
import type { Store, TransferOptions } from './target.js';

/** Serialises a small JSON document (config, manifest, index) and pushes it; returns its descriptor. */
export async function pushJson(
  store: Store,
  mediaType: string,
  value: unknown,
  options: TransferOptions = {},
): Promise<{ desc: Descriptor; bytes: Buffer }> {
  const bytes = Buffer.from(JSON.stringify(value));
  const desc: Descriptor = { mediaType, digest: sha256(bytes), size: bytes.length };
  await store.push(desc, Readable.from([bytes]), options);
  return { desc, bytes };
}
