import { resolveImage } from '../content/resolve-image.js';
import { CkptError, isCkptError } from '../errors.js';
import type { TransferOptions } from '../content/target.js';
import type { Descriptor, Platform } from '../oci/schemas.js';
import { formatReference, parseReference, referenceSelector } from '../reference.js';
import { REGISTRY_ACCESS_NAMES, type RegistryAccess, openTarget, selectorIn } from '../target/open.js';
import { unpackToArchive } from '../unpack/archive.js';
import { unpackToDirectory } from '../unpack/directory.js';
import { startSpareWorkers, stopSpareWorkers } from '../threads/spares.js';
import { sparesForPull } from '../unpack/options.js';
import { copy } from './copy.js';
import { type OptionsSpec, optionNames, runCommand } from './run-command.js';

export interface PullOptions extends RegistryAccess, TransferOptions {
  /** The platform to pick from an image index (this node's by default). */
  platform?: Platform;
  /** Layers fetched at once (default 4). */
  concurrency?: number;
}

const OPTIONS: OptionsSpec = {
  kind: 'command',
  names: optionNames<PullOptions>({ ...REGISTRY_ACCESS_NAMES, signal: true, onProgress: true, platform: true, concurrency: true }),
};

export interface PullResult {
  /** The image pulled. */
  source: string;
  /** What the reference points to, and the manifest unpacked (the same unless it is an index). */
  descriptor: Descriptor;
  manifest: Descriptor;
  /** Where the checkpoint went, and as what. */
  destination: string;
  kind: 'directory' | 'archive' | 'layout';
}

/**
 * Brings a checkpoint image to this node: into a directory (the checkpoint tree, mode 0700), into
 * `NAME.tar` (an uncompressed archive in the kubelet's layout, which CRI-O restores from and
 * `podman container restore --import` reads), or into `oci:DIR[:TAG]`. Every blob is verified as
 * it streams; the output appears under its final name only when complete.
 */
export function pull(sourceInput: string, destination: string, options: PullOptions = {}): Promise<PullResult> {
  return runCommand(OPTIONS, { source: sourceInput, destination }, options, (checked) => pullChecked(sourceInput, destination, checked));
}

/** Names of compressed archives, which pull does not write: without this, such a name became a directory. */
const COMPRESSED_ARCHIVE = /\.(?:tar\.(?:gz|zst|xz|bz2)|tgz)$/i;

async function pullChecked(sourceInput: string, destination: string, options: PullOptions): Promise<PullResult> {
  const ref = parseReference(sourceInput);
  if (destination.startsWith('oci:')) {
    const { platform: _platform, ...copyOptions } = options; // copy takes no platform: the whole image goes
    const copied = await copy(sourceInput, destination, copyOptions);
    return { source: copied.source, descriptor: copied.descriptor, manifest: await copiedManifest(copied.reference, copied.descriptor, options), destination: copied.reference, kind: 'layout' };
  }
  if (COMPRESSED_ARCHIVE.test(destination)) {
    throw new CkptError('USAGE', 'pull writes an uncompressed archive (NAME.tar, as CRI-O and Podman read it) or a directory', { subject: destination });
  }
  // Layers decode on worker threads that start while the manifest is read.
  startSpareWorkers('unpack/zstd-worker', sparesForPull(options.concurrency));
  try {
    const target = await openTarget(ref, options);
    try {
      const image = await resolveImage(target, await selectorIn(target, ref), options);
      const archive = /\.tar$/i.test(destination);
      const unpack = archive ? unpackToArchive : unpackToDirectory;
      const result = await unpack(target, image.manifestDesc, destination, { ...options, manifest: image.manifest, checkpointImage: formatReference(ref) });
      return {
        source: formatReference(ref),
        descriptor: image.root,
        manifest: image.manifestDesc,
        destination: result.path,
        kind: archive ? 'archive' : 'directory',
      };
    } finally {
      await target.close?.();
    }
  } finally {
    await stopSpareWorkers('unpack/zstd-worker');
  }
}

/**
 * The manifest for this node (or `options.platform`) of an image copied whole into a layout, read
 * there; for an index without one, what the reference points to (`root`).
 */
async function copiedManifest(reference: string, root: Descriptor, options: PullOptions): Promise<Descriptor> {
  const ref = parseReference(reference);
  const layout = await openTarget(ref, options);
  try {
    return (await resolveImage(layout, referenceSelector(ref), options)).manifestDesc;
  } catch (err) {
    if (isCkptError(err, 'NOT_FOUND')) return root;
    throw err;
  } finally {
    await layout.close?.();
  }
}
