import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { type ByteMeter, metered } from '../content/meter.js';
import { resolveImage } from '../content/resolve-image.js';
import type { Platform } from '../oci/schemas.js';
import { CkptError, fromSystemError } from '../errors.js';
import { formatReference, parseReference } from '../reference.js';
import { type OpenTargetOptions, openTarget, selectorIn } from '../target/open.js';
import type { CheckpointSource } from './entry.js';
import { ArchiveSource } from './sources/archive.js';
import { DirectorySource } from './sources/directory.js';
import { ImageSource } from './sources/image.js';

export type OpenCheckpointOptions = Omit<OpenTargetOptions, 'create'> & {
  signal?: AbortSignal;
  /** The platform to pick from an image index (this node's by default). */
  platform?: Platform;
  /** Counts the bytes read from an image source. */
  meter?: ByteMeter;
};

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

async function openDirectory(path: string): Promise<CheckpointSource> {
  if ((await exists(join(path, 'inventory.img'))) || (await exists(join(path, 'checkpoint', 'inventory.img')))) {
    return new DirectorySource(path);
  }
  if (await exists(join(path, 'oci-layout'))) {
    throw new CkptError('NOT_CHECKPOINT', `an OCI image layout: name the image as oci:${path}:TAG`, { subject: path });
  }
  throw new CkptError('NOT_CHECKPOINT', 'not a checkpoint: no CRIU inventory.img (neither at the top nor in checkpoint/)', {
    subject: path,
  });
}

/**
 * Opens whatever a user names as a checkpoint: an archive (any compression), a checkpoint or raw
 * CRIU directory, or a checkpoint image (`oci:DIR:TAG`, or a registry reference) — a path that
 * exists wins over a reference of the same spelling.
 */
export async function openCheckpoint(input: string, options: OpenCheckpointOptions = {}): Promise<CheckpointSource> {
  if (!input.startsWith('oci:')) {
    let info;
    try {
      info = await stat(input);
    } catch (err) {
      const looksLikePath = input.startsWith('/') || input.startsWith('.') || !input.includes('/');
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || looksLikePath) throw fromSystemError(err, input);
    }
    if (info?.isDirectory()) return openDirectory(input);
    if (info) return ArchiveSource.open(input);
  }
  const ref = parseReference(input);
  const opened = await openTarget(ref, { ...options, create: false });
  const target = options.meter ? metered(opened, options.meter) : opened;
  try {
    const image = await resolveImage(target, await selectorIn(opened, ref), { signal: options.signal, platform: options.platform });
    return new ImageSource(formatReference(ref), target, image);
  } catch (err) {
    await target.close?.();
    throw err;
  }
}
