import { fetchJson } from '../content/fetch-json.js';
import type { ReadOnlyTarget } from '../content/target.js';
import type { Compression } from '../compress/codec.js';
import { CkptError } from '../errors.js';
import { CHECKPOINT_ARTIFACT_TYPE, isManifestType, layerCompression } from '../oci/mediatypes.js';
import { type Descriptor, type Manifest, ManifestSchema } from '../oci/schemas.js';

export interface LayerPlan {
  desc: Descriptor;
  compression: Compression;
  /** Read on a worker thread of its own (zstd-thread.ts) rather than on the main thread. */
  threaded: boolean;
}

/**
 * zstd layers from this compressed size up are read on a worker thread. Starting one costs about
 * 0.1 s, which the main thread spends on some 6 MiB (measured: 4 MiB went faster on the main
 * thread, 12 MiB on a worker); the metadata layer is a few KiB. gzip stays on the main thread:
 * zlib already inflates on libuv's threads.
 */
export const THREADED_MIN_SIZE = 8 << 20;

/**
 * How the layers relate, which decides how they may be applied:
 * - `single`: one layer, nothing to order;
 * - `disjoint`: a ckpt checkpoint image (artifactType), whose layers never hold the same file, so
 *   they may be applied in any order and at once (and an overlap is an error, not a merge);
 * - `stacked`: any other image, whose layers are OCI changesets applied in order (later entries
 *   replace earlier ones, whiteouts remove them).
 */
export type LayerOrder = 'single' | 'disjoint' | 'stacked';

export interface UnpackPlan {
  manifest: Manifest;
  layers: LayerPlan[];
  order: LayerOrder;
}

/** Reads the manifest and decides how to unpack it; refuses what cannot be unpacked before anything is written. */
export async function planUnpack(
  target: ReadOnlyTarget,
  manifestDesc: Descriptor,
  options: { signal?: AbortSignal | undefined; manifest?: Manifest | undefined },
): Promise<UnpackPlan> {
  if (!isManifestType(manifestDesc.mediaType)) {
    throw new CkptError('UNSUPPORTED', `${manifestDesc.mediaType} is not an image manifest (resolve an index to one image first)`, {
      subject: `${target.name}@${manifestDesc.digest}`,
    });
  }
  const manifest = options.manifest ?? (await fetchJson(target, manifestDesc, ManifestSchema, { signal: options.signal })).value;
  if (manifest.layers.length === 0) {
    throw new CkptError('NOT_CHECKPOINT', 'the image has no layers, so no checkpoint files', {
      subject: `${target.name}@${manifestDesc.digest}`,
    });
  }
  const layers = manifest.layers.map((desc) => {
    const compression = compressionOf(desc, `${target.name}@${desc.digest}`);
    return { desc, compression, threaded: compression === 'zstd' && desc.size >= THREADED_MIN_SIZE };
  });
  const order: LayerOrder =
    layers.length === 1 ? 'single' : manifest.artifactType === CHECKPOINT_ARTIFACT_TYPE ? 'disjoint' : 'stacked';
  return { manifest, layers, order };
}

function compressionOf(desc: Descriptor, subject: string): Compression {
  if (desc.mediaType.endsWith('+encrypted')) {
    throw new CkptError('UNSUPPORTED', `layer is encrypted (${desc.mediaType}); decrypt the image first`, { subject });
  }
  const compression = layerCompression(desc.mediaType);
  if (!compression) {
    throw new CkptError('UNSUPPORTED', `layer media type ${desc.mediaType} is not a tar layer`, { subject });
  }
  return compression;
}
