import { chmod, lstat, mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { ReadOnlyTarget } from '../content/target.js';
import { fromSystemError } from '../errors.js';
import type { Descriptor } from '../oci/schemas.js';
import { DirectoryAttributes, type ExtractStats, extractEntries, SymlinkLog } from '../tar/extract.js';
import {
  assertDirectoryFree,
  assertParentDirectory,
  commitDirectory,
  fillsInPlace,
  removeAbandonedSiblings,
  removeQuietly,
  tempSibling,
} from './destination.js';
import { abandonInPlace, commitInPlace, type InPlace, removeAbandonedInPlace, startInPlace } from './in-place.js';
import { assertHoldsCheckpoint } from './holds-checkpoint.js';
import { readLayer } from './layer.js';
import { type NormalisedUnpackOptions, normaliseUnpackOptions, type UnpackOptions } from './options.js';
import { mapLimited } from './parallel.js';
import { planUnpack, type UnpackPlan } from './plan.js';
import { PRIVATE_DIR } from '../fs/private-modes.js';

export interface UnpackResult {
  /** The output's final path. */
  path: string;
  /** The manifest that was unpacked. */
  manifest: Descriptor;
  layers: number;
  /** Entries written (archive) or applied (directory), and bytes of file content. */
  entries: number;
  bytes: number;
}

/**
 * Unpacks a checkpoint image into the directory `dest` (missing or empty): the checkpoint tree
 * appears there, mode 0700, only once every layer is extracted and verified; on failure nothing is
 * left behind.
 */
export async function unpackToDirectory(
  target: ReadOnlyTarget,
  manifestDesc: Descriptor,
  dest: string,
  options: UnpackOptions = {},
): Promise<UnpackResult> {
  const opts = normaliseUnpackOptions(options);
  const path = resolve(dest);
  await assertParentDirectory(path);
  await removeAbandonedSiblings(path);
  await removeAbandonedInPlace(path);
  await assertDirectoryFree(path);
  const plan = await planUnpack(target, manifestDesc, opts);
  const place: InPlace | undefined = (await fillsInPlace(path)) ? await startInPlace(path) : undefined;
  const temp = place?.temp ?? tempSibling(path);
  try {
    await mkdir(temp, { mode: PRIVATE_DIR });
  } catch (err) {
    if (place) await abandonInPlace(place);
    throw fromSystemError(err, path, true);
  }
  try {
    const stats = await extractLayers(target, plan, temp, path, opts);
    if (opts.checkpointImage !== undefined) {
      await assertHoldsCheckpoint(async (file) => (await lstat(join(temp, file)).catch(() => undefined))?.isFile() === true, opts.checkpointImage);
    }
    if (place) {
      await commitInPlace(place);
    } else {
      await chmod(temp, PRIVATE_DIR);
      await commitDirectory(temp, path);
    }
    return {
      path,
      manifest: manifestDesc,
      layers: plan.layers.length,
      entries: stats.reduce((sum, s) => sum + s.entries, 0),
      bytes: stats.reduce((sum, s) => sum + s.bytes, 0),
    };
  } catch (err) {
    await (place ? abandonInPlace(place) : removeQuietly(temp));
    throw fromSystemError(err, path, true);
  }
}

/**
 * Extracts every layer of `plan` into the existing directory `root`. Layers of a ckpt checkpoint
 * image (`disjoint`) are fetched and extracted `concurrency` at a time, in exclusive mode: they
 * never hold the same file, and exclusive extraction turns a false promise into an error rather
 * than a race. Any other image's layers are changesets whose order matters (replacements,
 * whiteouts), so they stream one after the other, without a second copy on disk; such images are
 * the one-layer ones Podman and the Kubernetes recipe make, for which order is moot anyway.
 */
export async function extractLayers(
  target: ReadOnlyTarget,
  plan: UnpackPlan,
  root: string,
  destinationName: string,
  opts: NormalisedUnpackOptions,
): Promise<ExtractStats[]> {
  const directories = new DirectoryAttributes();
  const links = new SymlinkLog();
  const exclusive = plan.order === 'disjoint';
  const limit = exclusive ? opts.concurrency : 1;
  const layers = plan.layers.map((layer, position) => ({ layer, position }));
  const stats = await mapLimited(layers, limit, opts.signal, ({ layer, position }, signal) =>
    readLayer(target, layer, { signal, onProgress: opts.onProgress }, (entries, subject) =>
      extractEntries(entries, root, { subject, signal, destinationName, exclusive, directories, links, position }),
    ),
  );
  await links.check(root);
  // Directory modes and times last: a later layer may still have written into any directory.
  await directories.apply(root, destinationName);
  return stats;
}
