import type { ReadOnlyTarget, Target } from '../content/target.js';
import { CkptError } from '../errors.js';
import { OciLayout } from '../layout/store.js';
import { type ImageReference, referenceSelector } from '../reference.js';
import { assertAuthFile, findCredential } from '../registry/credentials.js';
import { hostSettings } from '../registry/hosts.js';
import type { RegistryOptions } from '../registry/options.js';

/** How to reach registries, as a user states it on the command line or in code. */
export interface RegistryAccess {
  /** Credentials for this call, instead of those stored for the registry. */
  credentials?: { username: string; password: string };
  /**
   * The registry (`host[:port]`) `credentials` are for; any other gets the credentials stored for
   * it. Unset, they go to every registry opened with this access.
   */
  credentialsFor?: string;
  /** The auth file to read (`--authfile`); otherwise $REGISTRY_AUTH_FILE, Podman's and Docker's. */
  authFile?: string;
  /** Extra CA certificates (PEM files) to trust. */
  caFiles?: string[];
  /** Talk plain HTTP to the registry. */
  plainHttp?: boolean;
  /** Verify TLS certificates (default true). */
  tlsVerify?: boolean;
  /** Retry and chunking knobs of the registry client. */
  retry?: RegistryOptions['retry'];
  chunkSize?: number;
}

/** The names of RegistryAccess's options, for the commands' lists (run-command.ts, optionNames). */
export const REGISTRY_ACCESS_NAMES = {
  credentials: true,
  credentialsFor: true,
  authFile: true,
  caFiles: true,
  plainHttp: true,
  tlsVerify: true,
  retry: true,
  chunkSize: true,
} as const satisfies { [K in keyof Required<RegistryAccess>]: true };

export interface OpenTargetOptions extends RegistryAccess {
  /** Create an OCI layout that does not exist yet. */
  create?: boolean;
}

/** Client options for `repository` (whose auth-file entries scoped to it or its namespace apply). */
export function registryOptions(access: RegistryAccess, repository?: string): RegistryOptions {
  const explicit = access.credentials;
  const forThis = (registry: string) => explicit && (access.credentialsFor === undefined || access.credentialsFor === registry);
  return {
    credentials: async (registry, signal) => (forThis(registry) ? explicit : findCredential(registry, { authFile: access.authFile, repository, signal })),
    hostSettings: (registry) => hostSettings(registry, { caFiles: access.caFiles, plainHttp: access.plainHttp, repository }),
    tlsVerify: access.tlsVerify,
    retry: access.retry,
    chunkSize: access.chunkSize,
  };
}

/** The place a parsed reference names, ready to read or write; close() it when done. */
export async function openTarget(ref: ImageReference, options: OpenTargetOptions = {}): Promise<Target> {
  if (ref.kind === 'layout') return OciLayout.open(ref.dir, { create: options.create });
  if (options.credentials && !options.credentials.username) {
    throw new CkptError('USAGE', 'credentials need a user name');
  }
  // Up front, as Podman does: a registry that never asks for a login would hide the mistake.
  await assertAuthFile(options);
  // The HTTP stack loads only when a registry is used: local builds start faster without it.
  const { RegistryRepository } = await import('../registry/repository.js');
  return RegistryRepository.open(ref, registryOptions(options, ref.repository));
}

/**
 * The access of a command that writes to `destination`, for what it opens (the source too):
 * credentials given for the command go to the registry it writes to and never to another host. A
 * source on that registry gets them too; with a layout as the destination, the source's registry
 * is the only one, and gets them.
 */
export function writingTo<T extends RegistryAccess>(destination: ImageReference, access: T): T {
  return destination.kind === 'registry' ? { ...access, credentialsFor: destination.registry } : access;
}

/**
 * The tag or digest `ref` selects in `target`, which `openTarget` opened from it: `latest` where it
 * names neither, but in a layout that holds one image, that image, as containers/image reads
 * `oci:DIR` (`skopeo copy … oci:DIR` writes one image, untagged).
 */
export async function selectorIn(target: ReadOnlyTarget, ref: ImageReference): Promise<string> {
  const selector = referenceSelector(ref);
  if (ref.kind !== 'layout' || ref.tag !== undefined || ref.digest !== undefined || !(target instanceof OciLayout)) return selector;
  const { manifests } = await target.readIndex();
  return manifests.length === 1 && manifests[0] ? manifests[0].digest : selector;
}
