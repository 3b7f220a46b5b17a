import { arch } from 'node:os';
import { goArch } from '../checkpoint/host.js';
import { CkptError } from '../errors.js';
import { isIndexType, isManifestType } from '../oci/mediatypes.js';
import { type Descriptor, type Index, IndexSchema, type Manifest, ManifestSchema, type Platform } from '../oci/schemas.js';
import { fetchJson } from './fetch-json.js';
import type { ReadOnlyTarget, TransferOptions } from './target.js';

export interface ResolvedImage {
  /** What the reference points to (a manifest, or an index). */
  root: Descriptor;
  index?: Index;
  manifestDesc: Descriptor;
  manifest: Manifest;
}

export function hostPlatform(): Platform {
  return { architecture: goArch(arch()), os: 'linux' };
}

/**
 * Resolves a tag or digest to one image manifest; an index resolves to the entry for `platform`
 * (this node's by default), or to its only manifest.
 */
export async function resolveImage(
  target: ReadOnlyTarget,
  reference: string,
  options: TransferOptions & { platform?: Platform } = {},
): Promise<ResolvedImage> {
  const root = await target.resolve(reference, options);
  if (isManifestType(root.mediaType)) {
    const { value } = await fetchJson(target, root, ManifestSchema, options);
    return { root, manifestDesc: root, manifest: value };
  }
  if (!isIndexType(root.mediaType)) {
    throw new CkptError('UNSUPPORTED', `${reference} is a ${root.mediaType}, not an image`, { subject: target.name });
  }
  const { value: index } = await fetchJson(target, root, IndexSchema, options);
  const want = options.platform ?? hostPlatform();
  const images = index.manifests.filter((m) => isManifestType(m.mediaType));
  const match =
    images.find((m) => m.platform?.architecture === want.architecture && m.platform.os === want.os) ??
    (images.length === 1 ? images[0] : undefined);
  if (!match) {
    throw new CkptError('NOT_FOUND', `${reference} has no image for ${want.os}/${want.architecture}`, { subject: target.name });
  }
  const { value } = await fetchJson(target, match, ManifestSchema, options);
  return { root, index, manifestDesc: match, manifest: value };
}
