import { arch } from 'node:os';
import { goArch } from '../checkpoint/host.js';
import { CkptError } from '../errors.js';
import { isDigest } from '../oci/digest.js';
import { isManifestType } from '../oci/mediatypes.js';
import { type Descriptor, ImageConfigSchema, type Index, IndexSchema, type Manifest, ManifestSchema, parseJson, type Platform } from '../oci/schemas.js';
import { fetchJson, fetchSmall } from './fetch-json.js';
import { hasSuccessors } from './graph.js';
import type { ReadOnlyTarget, TransferOptions } from './target.js';

export interface ResolvedImage {
  /** What the reference points to (a manifest, or an index). */
  root: Descriptor;
  /** The root's bytes, checked against it: a copy or tag of the image need not read them again. */
  rootBytes: Buffer;
  index?: Index;
  manifestDesc: Descriptor;
  manifest: Manifest;
}

export function hostPlatform(): Platform {
  return { architecture: goArch(arch()), os: 'linux' };
}

/** Whether an index entry is for `want`: same OS and architecture, and variant where both name one. */
function isFor(platform: Platform | undefined, want: Platform): boolean {
  if (platform?.architecture !== want.architecture || platform.os !== want.os) return false;
  return !want.variant || !platform.variant || platform.variant === want.variant;
}

/**
 * Resolves a tag or digest to one image manifest; an index resolves to the entry for `platform`.
 * Without one asked for, this node's, or else the index's only image (a checkpoint index holds
 * one); a platform asked for must be there.
 */
export async function resolveImage(
  target: ReadOnlyTarget,
  reference: string,
  options: TransferOptions & { platform?: Platform } = {},
): Promise<ResolvedImage> {
  const { root, bytes } = await readRoot(target, reference, options);
  if (!bytes) {
    throw new CkptError('UNSUPPORTED', `${reference} is a ${root.mediaType}, not an image`, { subject: target.name });
  }
  const subject = `${target.name}@${root.digest}`;
  const want = options.platform ?? hostPlatform();
  const missing = () => {
    const name = [want.os, want.architecture, want.variant].filter(Boolean).join('/');
    return new CkptError('NOT_FOUND', `no image for ${name}`, { subject: `${target.name}${isDigest(reference) ? '@' : ':'}${reference}` });
  };
  if (isManifestType(root.mediaType)) {
    const manifest = parseJson(ManifestSchema, bytes, subject);
    // A platform asked for is checked against the one image's config, which says what it is for.
    if (options.platform) {
      const { value: config } = await fetchJson(target, manifest.config, ImageConfigSchema, options);
      if (!isFor(config, want)) throw missing();
    }
    return { root, rootBytes: bytes, manifestDesc: root, manifest };
  }
  const index = parseJson(IndexSchema, bytes, subject);
  const images = index.manifests.filter((m) => isManifestType(m.mediaType));
  const match = images.find((m) => isFor(m.platform, want)) ?? (!options.platform && images.length === 1 ? images[0] : undefined);
  if (!match) throw missing();
  const { value } = await fetchJson(target, match, ManifestSchema, options);
  return { root, rootBytes: bytes, index, manifestDesc: match, manifest: value };
}

/**
 * What the reference points to and, for a manifest or an index, its bytes (checked against it): in
 * one request where the target can.
 */
export async function readRoot(target: ReadOnlyTarget, reference: string, options: TransferOptions): Promise<{ root: Descriptor; bytes?: Buffer }> {
  const fetched = target.fetchReference ? await target.fetchReference(reference, options) : undefined;
  const root = fetched?.desc ?? (await target.resolve(reference, options));
  return { root, bytes: fetched?.bytes ?? (hasSuccessors(root) ? await fetchSmall(target, root, options) : undefined) };
}
