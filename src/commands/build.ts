import { openCheckpoint } from '../checkpoint/open.js';
import { CkptError } from '../errors.js';
import { type BuildImageOptions, type BuildImageResult, buildImage } from '../image/build.js';
import { removeNewLayoutOnFailure } from '../layout/new-layout.js';
import { type ImageReference, formatReference, parseReference } from '../reference.js';
import { type OpenTargetOptions, REGISTRY_ACCESS_NAMES, openTarget, writingTo } from '../target/open.js';
import { type OptionsSpec, optionNames, runCommand } from './run-command.js';

export type BuildOptions = Omit<BuildImageOptions, 'tag'> & Omit<OpenTargetOptions, 'create'>;

/** The names of build's options, which push takes too. */
export const BUILD_OPTION_NAMES = {
  ...REGISTRY_ACCESS_NAMES,
  signal: true,
  onProgress: true,
  compression: true,
  level: true,
  compat: true,
  annotations: true,
  hostInfo: true,
  maxLayerBytes: true,
  cache: true,
  concurrency: true,
} as const;

const OPTIONS: OptionsSpec = { kind: 'build', names: optionNames<BuildOptions>(BUILD_OPTION_NAMES) };

export interface BuildResult extends BuildImageResult {
  /** The destination as given, with the tag used. */
  reference: string;
}

function destinationTag(ref: ImageReference, input: string): string {
  if (ref.digest) throw new CkptError('INVALID_REFERENCE', 'a build destination takes a tag, not a digest', { subject: input });
  return ref.tag ?? 'latest';
}

/**
 * Turns a checkpoint (archive, directory, raw CRIU dump, or checkpoint image) into a checkpoint
 * image at `destination` (`oci:DIR[:TAG]` or a registry reference). On failure nothing is left
 * tagged, and a layout the build created is removed, unless another process has it open to write
 * or has tagged into it meanwhile.
 */
export function build(sourceInput: string, destination: string, options: BuildOptions = {}): Promise<BuildResult> {
  return runCommand(OPTIONS, { source: sourceInput, destination }, options, (checked) => buildChecked(sourceInput, destination, checked));
}

async function buildChecked(sourceInput: string, destination: string, options: BuildOptions): Promise<BuildResult> {
  const ref = parseReference(destination);
  const tag = destinationTag(ref, destination);
  const source = await openCheckpoint(sourceInput, writingTo(ref, options));
  try {
    return await removeNewLayoutOnFailure(ref, async () => {
      const target = await openTarget(ref, { ...options, create: true });
      try {
        const result = await buildImage(source, target, { ...options, tag });
        return { ...result, reference: formatReference({ ...ref, tag }) };
      } finally {
        await target.close?.();
      }
    });
  } finally {
    await source.close?.();
  }
}
