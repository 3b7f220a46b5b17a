import { copyGraph } from '../content/copy.js';
import { assertReadable } from '../content/graph.js';
import { readRoot } from '../content/resolve-image.js';
import { CkptError, isCkptError } from '../errors.js';
import { removeNewLayoutOnFailure } from '../layout/new-layout.js';
import { OciLayout } from '../layout/store.js';
import type { Descriptor } from '../oci/schemas.js';
import { type ImageReference, formatReference, parseReference } from '../reference.js';
import type { TransferOptions } from '../content/target.js';
import { REGISTRY_ACCESS_NAMES, type RegistryAccess, openTarget, selectorIn, writingTo } from '../target/open.js';
import { type OptionsSpec, optionNames, runCommand } from './run-command.js';

export interface CopyOptions extends RegistryAccess {
  /**
   * Access for the source where it differs (its credentials, CAs). Without credentials here, the
   * source gets `credentials` only when it is on the destination's registry or the destination is
   * a layout.
   */
  source?: RegistryAccess;
  concurrency?: number;
  signal?: AbortSignal;
  onProgress?: TransferOptions['onProgress'];
}

const OPTIONS: OptionsSpec = {
  kind: 'command',
  names: optionNames<CopyOptions>({ ...REGISTRY_ACCESS_NAMES, source: true, concurrency: true, signal: true, onProgress: true }),
  nested: { source: optionNames<RegistryAccess>(REGISTRY_ACCESS_NAMES) },
};

export interface CopyResult {
  source: string;
  reference: string;
  descriptor: Descriptor;
}

/**
 * Copies an image (with every platform of an index) between any two places — registry to
 * registry, layout to registry and back — keeping every digest. Blobs already at the destination
 * are skipped and blobs in another repository of the same registry are mounted. On failure a
 * layout the copy created is removed, as `build` removes one.
 */
export function copy(sourceInput: string, destination: string, options: CopyOptions = {}): Promise<CopyResult> {
  return runCommand(OPTIONS, { source: sourceInput, destination }, options, (checked) => copyChecked(sourceInput, destination, checked));
}

/**
 * Credentials given for a copy between two registries go to the destination's alone (writingTo):
 * when the source's then asks for a login, the message says where the source's go.
 */
function sourceCredentialsHint(err: unknown, srcRef: ImageReference, dstRef: ImageReference, options: CopyOptions): unknown {
  const elsewhere = srcRef.kind === 'registry' && dstRef.kind === 'registry' && srcRef.registry !== dstRef.registry;
  // A token registry refuses an anonymous pull of a private repository as DENIED (insufficient_scope).
  const refused = isCkptError(err, 'UNAUTHORIZED') || isCkptError(err, 'DENIED');
  if (!refused || !elsewhere || !options.credentials || options.source?.credentials) return err;
  const hint = `the credentials given go to ${dstRef.registry}, the destination; give the source's with --src-creds (source.credentials)`;
  return new CkptError(err.code, `${err.detail} (${hint})`, { subject: err.subject, cause: err });
}

async function copyChecked(sourceInput: string, destination: string, options: CopyOptions): Promise<CopyResult> {
  const srcRef = parseReference(sourceInput);
  const dstRef = parseReference(destination);
  // As containers/image refuses it: one of the two would go unheeded.
  if (dstRef.tag !== undefined && dstRef.digest !== undefined) {
    throw new CkptError('INVALID_REFERENCE', 'a destination takes a tag or a digest, not both', { subject: destination });
  }
  // The source's own credentials where given, else the command's where writingTo lets them go.
  const src = await openTarget(
    srcRef,
    options.source?.credentials ? { ...options, ...options.source, credentialsFor: undefined } : { ...writingTo(dstRef, options), ...options.source },
  );
  try {
    // One GET of a registry's manifest, whose bytes the copy and the tag then use.
    const { root, bytes } = await readRoot(src, await selectorIn(src, srcRef), options).catch((err: unknown) => {
      throw sourceCredentialsHint(err, srcRef, dstRef, options);
    });
    // Before the destination is opened, let alone made.
    assertReadable(root, src.name);
    if (dstRef.digest && dstRef.digest !== root.digest) {
      throw new CkptError('INVALID_REFERENCE', `the source is ${root.digest}, not ${dstRef.digest}`, { subject: destination });
    }
    return await removeNewLayoutOnFailure(dstRef, async () => {
      const dst = await openTarget(dstRef, { ...options, create: true });
      try {
        const tag = dstRef.digest ? undefined : (dstRef.tag ?? srcRef.tag ?? 'latest');
        await copyGraph(src, dst, root, { ...options, rootBytes: bytes, tag });
        // Untagged in a layout, the image must still be listed, or nothing reaches it.
        if (!tag && dst instanceof OciLayout) await dst.list(root);
        return {
          source: formatReference(srcRef),
          reference: formatReference(tag ? { ...dstRef, tag } : { ...dstRef, digest: root.digest }),
          descriptor: root,
        };
      } finally {
        await dst.close?.();
      }
    });
  } finally {
    await src.close?.();
  }
}
