import type { z } from 'zod';
import { CkptError } from '../errors.js';
import { parseJson } from '../oci/schemas.js';
import type { Descriptor } from '../oci/schemas.js';
import type { ReadOnlyStore, TransferOptions } from './target.js';

/**
 * Manifests, indexes and configs larger than this are refused rather than read into memory
 * (registries should accept manifests of 4 MiB: distribution spec).
 */
export const MAX_JSON_BYTES = 4 * 1024 * 1024;

/** Reads a small JSON blob (verified against its descriptor) and parses it against a schema. */
export async function fetchJson<T extends z.ZodType>(
  store: ReadOnlyStore,
  desc: Descriptor,
  schema: T,
  options: TransferOptions = {},
): Promise<{ value: z.infer<T>; bytes: Buffer }> {
  const bytes = await fetchSmall(store, desc, options);
  return { value: parseJson(schema, bytes, `${store.name}@${desc.digest}`), bytes };
}

/** Refuses a manifest, index or config too large to be read into memory. */
export function assertSmall(desc: Descriptor, subject: string): void {
  if (desc.size > MAX_JSON_BYTES) {
    throw new CkptError('INVALID_MANIFEST', `${desc.mediaType} of ${desc.size} bytes is larger than ${MAX_JSON_BYTES}`, { subject });
  }
}

/** Reads a small blob (verified against its descriptor) into memory. */
export async function fetchSmall(store: ReadOnlyStore, desc: Descriptor, options: TransferOptions = {}): Promise<Buffer> {
  assertSmall(desc, `${store.name}@${desc.digest}`);
  const chunks: Buffer[] = [];
  for await (const chunk of await store.fetch(desc, options)) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
