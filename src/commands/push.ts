import { openCheckpoint } from '../checkpoint/open.js';
import { ImageSource } from '../checkpoint/sources/image.js';
import { copyGraph } from '../content/copy.js';
import { CkptError } from '../errors.js';
import { type BuildImageOptions, buildImage } from '../image/build.js';
import { removeNewLayoutOnFailure } from '../layout/new-layout.js';
import { CHECKPOINT_ARTIFACT_TYPE } from '../oci/mediatypes.js';
import type { Descriptor } from '../oci/schemas.js';
import { formatReference, parseReference } from '../reference.js';
import { type OpenTargetOptions, openTarget, writingTo } from '../target/open.js';
import { BUILD_OPTION_NAMES } from './build.js';
import { type OptionsSpec, optionNames, runCommand } from './run-command.js';

export interface PushOptions extends Omit<BuildImageOptions, 'tag'>, Omit<OpenTargetOptions, 'create'> {
  /** Blobs moved at once when the source is already a checkpoint image (default 4). */
  concurrency?: number;
}

const OPTIONS: OptionsSpec = { kind: 'build', names: optionNames<PushOptions>(BUILD_OPTION_NAMES) };

export interface PushResult {
  reference: string;
  /** What the tag points to. */
  descriptor: Descriptor;
  /** The image manifest: `descriptor` itself, unless that is an index around it (containerd's form). */
  manifest: Descriptor;
  /** Layers of the pushed image as its manifest lists them: sizes, and each one's role in `dev.ckpt.layer`. */
  layers: Descriptor[];
  /** True when the source was turned into a checkpoint image on the way; false for a plain copy. */
  built: boolean;
}

/** Options that only a build uses, with the CLI flags that set them: a message names both. */
const IMAGE_OPTIONS = {
  compression: '--compression',
  level: '--level',
  compat: '--compat',
  annotations: '--annotation',
  hostInfo: '--no-host-info',
  maxLayerBytes: '--max-layer-size',
} as const;

/** A checkpoint image is copied as it is: options that would change it are refused, not ignored. */
function assertNoImageOptions(options: PushOptions, source: string): void {
  const given = (Object.keys(IMAGE_OPTIONS) as Array<keyof typeof IMAGE_OPTIONS>).filter((key) => options[key] !== undefined);
  if (given.length > 0) {
    const flags = given.map((key) => `${IMAGE_OPTIONS[key]} (${key})`).join(', ');
    throw new CkptError('USAGE', `a checkpoint image is pushed as it is, so ${flags} would change nothing; \`ckpt build\` rebuilds it`, { subject: source });
  }
}

/**
 * Puts a checkpoint into a registry (or layout) under a tag. An archive or directory is built
 * straight into the destination, layer by layer, with no second copy on disk; a checkpoint image
 * ckpt made is copied as it is, keeping its digests. The tag moves last; on failure a layout the
 * push created is removed, as `build` removes one.
 */
export function push(sourceInput: string, destination: string, options: PushOptions = {}): Promise<PushResult> {
  return runCommand(OPTIONS, { source: sourceInput, destination }, options, (checked) => pushChecked(sourceInput, destination, checked));
}

async function pushChecked(sourceInput: string, destination: string, options: PushOptions): Promise<PushResult> {
  const ref = parseReference(destination);
  if (ref.digest) throw new CkptError('INVALID_REFERENCE', 'a push destination takes a tag, not a digest', { subject: destination });
  const tag = ref.tag ?? 'latest';
  const reference = formatReference({ ...ref, tag });
  const source = await openCheckpoint(sourceInput, writingTo(ref, options));
  try {
    return await removeNewLayoutOnFailure(ref, async () => {
      const target = await openTarget(ref, { ...options, create: true });
      try {
        if (source instanceof ImageSource && source.image.manifest.artifactType === CHECKPOINT_ARTIFACT_TYPE) {
          assertNoImageOptions(options, sourceInput);
          const { root, rootBytes } = source.image;
          await copyGraph(source.target, target, root, { ...options, rootBytes, tag });
          const { root: descriptor, manifestDesc: manifest, manifest: { layers } } = source.image;
          return { reference, descriptor, manifest, layers, built: false };
        }
        const result = await buildImage(source, target, { ...options, tag });
        return { reference, descriptor: result.descriptor, manifest: result.manifest, layers: result.manifestLayers, built: true };
      } finally {
        await target.close?.();
      }
    });
  } finally {
    await source.close?.();
  }
}
