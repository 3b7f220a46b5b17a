import { CkptError } from '../errors.js';
import { isIndexType, isManifestType } from '../oci/mediatypes.js';
import { IndexSchema, ManifestSchema, parseJson, type Descriptor } from '../oci/schemas.js';

/**
 * The only place that knows which descriptors a manifest or an index points to. An index's
 * entries must be manifests or indexes ckpt reads into (`assertReadable`).
 */
export function successors(desc: Descriptor, bytes: Buffer, subject: string): Descriptor[] {
  if (isManifestType(desc.mediaType)) {
    const manifest = parseJson(ManifestSchema, bytes, subject);
    return [manifest.config, ...manifest.layers];
  }
  if (isIndexType(desc.mediaType)) {
    const { manifests } = parseJson(IndexSchema, bytes, subject);
    for (const entry of manifests) assertReadable(entry, subject);
    return manifests;
  }
  return [];
}

export function hasSuccessors(desc: Descriptor): boolean {
  return isManifestType(desc.mediaType) || isIndexType(desc.mediaType);
}

/**
 * Refuses a manifest of a kind ckpt does not read into (an OCI 1.1-rc artifact manifest, Docker
 * schema 1): copied as bytes, it would point at blobs left behind.
 */
export function assertReadable(desc: Descriptor, subject: string): void {
  if (!hasSuccessors(desc)) {
    throw new CkptError('UNSUPPORTED', `${desc.digest} is of type ${desc.mediaType}: ckpt copies OCI and Docker v2 manifests and indexes only`, { subject });
  }
}
