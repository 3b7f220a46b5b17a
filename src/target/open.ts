import type { Target } from '../content/target.js';
import { OciLayout } from '../layout/store.js';
import type { ImageReference } from '../reference.js';

export interface OpenTargetOptions {
  /** Create an OCI layout that does not exist yet. */
  create?: boolean;
}

/** The place a parsed reference names, ready to read or write. */
export async function openTarget(ref: ImageReference, options: OpenTargetOptions = {}): Promise<Target> {
  if (ref.kind === 'layout') return OciLayout.open(ref.dir, { create: options.create });
  throw new Error('registry references are not supported yet');
}
