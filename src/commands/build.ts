import { readdir, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { openCheckpoint } from '../checkpoint/open.js';
import { CkptError } from '../errors.js';
import { type BuildImageOptions, type BuildImageResult, buildImage } from '../image/build.js';
import { type ImageReference, formatReference, parseReference } from '../reference.js';
import { type OpenTargetOptions, openTarget } from '../target/open.js';

export type BuildOptions = Omit<BuildImageOptions, 'tag'> & Omit<OpenTargetOptions, 'create'>;

export interface BuildResult extends BuildImageResult {
  /** The destination as given, with the tag used. */
  reference: string;
}

/** What a new layout directory looked like before the build, so a failure can put it back. */
async function layoutBefore(dir: string): Promise<'missing' | 'empty' | 'present'> {
  try {
    return (await readdir(dir)).length === 0 ? 'empty' : 'present';
  } catch {
    return 'missing';
  }
}

/** Removes what a failed build created in a layout that did not exist (or was empty) before. */
async function undoLayout(dir: string, before: 'missing' | 'empty' | 'present'): Promise<void> {
  if (before === 'missing') await rm(dir, { recursive: true, force: true });
  if (before === 'empty') {
    for (const name of await readdir(dir).catch(() => [])) await rm(join(dir, name), { recursive: true, force: true });
  }
}

function destinationTag(ref: ImageReference, input: string): string {
  if (ref.digest) throw new CkptError('INVALID_REFERENCE', 'a build destination takes a tag, not a digest', { subject: input });
  return ref.tag ?? 'latest';
}

/**
 * Turns a checkpoint (archive, directory, raw CRIU dump, or checkpoint image) into a checkpoint
 * image at `destination` (`oci:DIR[:TAG]` or a registry reference). On failure nothing is left
 * tagged, and a layout the build created is removed.
 */
export async function build(sourceInput: string, destination: string, options: BuildOptions = {}): Promise<BuildResult> {
  const ref = parseReference(destination);
  const tag = destinationTag(ref, destination);
  const source = await openCheckpoint(sourceInput, options);
  const before = ref.kind === 'layout' ? await layoutBefore(resolve(ref.dir)) : 'present';
  try {
    const target = await openTarget(ref, { ...options, create: true });
    try {
      const result = await buildImage(source, target, { ...options, tag });
      return { ...result, reference: formatReference({ ...ref, tag }) };
    } finally {
      await target.close?.();
    }
  } catch (err) {
    if (ref.kind === 'layout') await undoLayout(resolve(ref.dir), before);
    throw err;
  } finally {
    await source.close?.();
  }
}
