import { mkdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import { DirectorySource } from '../checkpoint/sources/directory.js';
import type { ReadOnlyTarget } from '../content/target.js';
import { fromSystemError } from '../errors.js';
import type { Descriptor } from '../oci/schemas.js';
import { type AddEntry, writeArchive } from './archive-writer.js';
import { assertFileFree, assertParentDirectory, commitFile, removeAbandonedSiblings, removeQuietly, tempSibling } from './destination.js';
import { extractLayers, type UnpackResult } from './directory.js';
import { assertHoldsCheckpoint } from './holds-checkpoint.js';
import { readLayer } from './layer.js';
import { type NormalisedUnpackOptions, normaliseUnpackOptions, type UnpackOptions } from './options.js';
import { planUnpack, type UnpackPlan } from './plan.js';
import { PRIVATE_DIR } from '../fs/private-modes.js';

/**
 * Unpacks a checkpoint image into one uncompressed tar at `destTar` in the kubelet's layout (the
 * checkpoint's files at the archive root, as `crictl checkpoint --export` writes it), which CRI-O
 * restores when a container's image names it and `podman container restore --import` reads. The
 * file (mode 0600) appears under its name only when complete and verified.
 *
 * Entries go straight from the layers into the archive, layer after layer, when the layers cannot
 * overlap: one layer, or a ckpt checkpoint image, whose layers never hold the same file (an overlap
 * there is an error). Any other multi-layer image is a stack of changesets whose merged view a
 * stream cannot know in advance (a later layer may replace or white out anything), so it is
 * extracted to a private directory beside the destination first and archived from there.
 */
export async function unpackToArchive(
  target: ReadOnlyTarget,
  manifestDesc: Descriptor,
  destTar: string,
  options: UnpackOptions = {},
): Promise<UnpackResult> {
  const opts = normaliseUnpackOptions(options);
  const path = resolve(destTar);
  await assertParentDirectory(path);
  // First: a pull killed as it committed leaves the archive and its hard-linked sibling, whose
  // bytes would otherwise stay on disk once the user removes the archive.
  await removeAbandonedSiblings(path);
  await assertFileFree(path);
  const plan = await planUnpack(target, manifestDesc, opts);
  const temp = tempSibling(path);
  const scratch = plan.order === 'stacked' ? tempSibling(path) : undefined;
  try {
    const entries = scratch ? mergedEntries(target, plan, scratch, path, opts) : streamedEntries(target, plan, opts);
    // The files that went in, where the image must prove a checkpoint.
    const files = new Set<string>();
    const fill: typeof entries =
      opts.checkpointImage === undefined
        ? entries
        : (add, signal) =>
            entries(async (source, subject) => {
              if (source.entry.type === 'file') files.add(source.entry.path);
              await add(source, subject);
            }, signal);
    const stats = await writeArchive(temp, plan.order === 'disjoint', opts.signal, fill);
    if (opts.checkpointImage !== undefined) await assertHoldsCheckpoint((file) => files.has(file), opts.checkpointImage);
    await commitFile(temp, path);
    return { path, manifest: manifestDesc, layers: plan.layers.length, ...stats };
  } catch (err) {
    await removeQuietly(temp);
    throw fromSystemError(err, path, true);
  } finally {
    if (scratch) await removeQuietly(scratch);
  }
}

/** Every layer's entries in manifest order, read as they arrive. */
function streamedEntries(target: ReadOnlyTarget, plan: UnpackPlan, opts: NormalisedUnpackOptions) {
  return async (add: AddEntry, signal: AbortSignal): Promise<void> => {
    for (const layer of plan.layers) {
      await readLayer(target, layer, { signal, onProgress: opts.onProgress }, async (entries, subject) => {
        for await (const entry of entries) await add(entry, subject);
      });
    }
  };
}

/** The merged tree of stacked layers, extracted to `scratch` (mode 0700) and read back in name order. */
function mergedEntries(target: ReadOnlyTarget, plan: UnpackPlan, scratch: string, path: string, opts: NormalisedUnpackOptions) {
  return async (add: AddEntry, signal: AbortSignal): Promise<void> => {
    await mkdir(scratch, { mode: PRIVATE_DIR });
    await extractLayers(target, plan, scratch, path, { ...opts, signal });
    for await (const entry of new DirectorySource(scratch).entries(signal)) await add(entry, scratch);
  };
}
