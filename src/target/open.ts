import type { Target } from '../content/target.js';
import { CkptError } from '../errors.js';
import { OciLayout } from '../layout/store.js';
import type { ImageReference } from '../reference.js';
import { findCredential } from '../registry/credentials.js';
import { hostSettings } from '../registry/hosts.js';
import type { RegistryOptions } from '../registry/options.js';

/** How to reach registries, as a user states it on the command line or in code. */
export interface RegistryAccess {
  /** Credentials for this call, instead of those stored for the registry. */
  credentials?: { username: string; password: string };
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

export interface OpenTargetOptions extends RegistryAccess {
  /** Create an OCI layout that does not exist yet. */
  create?: boolean;
}

export function registryOptions(access: RegistryAccess): RegistryOptions {
  const explicit = access.credentials;
  return {
    credentials: explicit ? async () => explicit : (registry) => findCredential(registry, { authFile: access.authFile }),
    hostSettings: (registry) => hostSettings(registry, { caFiles: access.caFiles, plainHttp: access.plainHttp }),
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
  // The HTTP stack loads only when a registry is used: local builds start faster without it.
  const { RegistryRepository } = await import('../registry/repository.js');
  return RegistryRepository.open(ref, registryOptions(options));
}
