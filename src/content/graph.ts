import { isIndexType, isManifestType } from '../oci/mediatypes.js';
import { IndexSchema, ManifestSchema, parseJson, type Descriptor } from '../oci/schemas.js';

/** The only place that knows which descriptors a manifest or an index points to. */
export function successors(desc: Descriptor, bytes: Buffer, subject: string): Descriptor[] {
  if (isManifestType(desc.mediaType)) {
    const manifest = parseJson(ManifestSchema, bytes, subject);
    return [manifest.config, ...manifest.layers];
  }
  if (isIndexType(desc.mediaType)) return parseJson(IndexSchema, bytes, subject).manifests;
  return [];
}

export function hasSuccessors(desc: Descriptor): boolean {
  return isManifestType(desc.mediaType) || isIndexType(desc.mediaType);
}
