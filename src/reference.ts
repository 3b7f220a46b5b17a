import { CkptError } from './errors.js';
import { isDigest } from './oci/digest.js';

/**
 * The one grammar for places that hold images, shared by the library and the CLI:
 *   oci:DIR[:TAG|@DIGEST]                      an OCI image layout directory
 *   [docker://]HOST[:PORT]/REPO[:TAG|@DIGEST]  a registry repository
 * A name without a host (`busybox`, `user/app`) means Docker Hub, as Docker users expect.
 */
export type ImageReference = LayoutReference | RegistryReference;

export interface LayoutReference {
  kind: 'layout';
  dir: string;
  tag?: string;
  digest?: string;
}

export interface RegistryReference {
  kind: 'registry';
  /** The registry as users name it (`docker.io`, `localhost:5000`). */
  registry: string;
  repository: string;
  tag?: string;
  digest?: string;
}

export const DOCKER_HUB = 'docker.io';

const TAG_RE = /^[\w][\w.-]{0,127}$/;
const REPO_COMPONENT_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const HOST_RE = /^(?:\[[0-9a-fA-F:]+\]|[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*)(?::[0-9]{1,5})?$/;

function usage(input: string, why: string): CkptError {
  return new CkptError('INVALID_REFERENCE', why, { subject: input });
}

function splitTagAndDigest(input: string, rest: string): { name: string; tag?: string; digest?: string } {
  let name = rest;
  let digest: string | undefined;
  const at = name.indexOf('@');
  if (at >= 0) {
    digest = name.slice(at + 1);
    name = name.slice(0, at);
    if (!isDigest(digest)) throw usage(input, `invalid digest ${JSON.stringify(digest)}`);
  }
  let tag: string | undefined;
  const colon = name.lastIndexOf(':');
  if (colon > name.lastIndexOf('/')) {
    tag = name.slice(colon + 1);
    name = name.slice(0, colon);
    if (!TAG_RE.test(tag)) throw usage(input, `invalid tag ${JSON.stringify(tag)}`);
  }
  return { name, tag, digest };
}

export function parseLayoutReference(input: string): LayoutReference {
  const body = input.slice('oci:'.length);
  if (body === '') throw usage(input, 'an OCI layout reference needs a directory: oci:DIR[:TAG]');
  let dir = body;
  let tag: string | undefined;
  let digest: string | undefined;
  const at = body.lastIndexOf('@');
  if (at >= 0 && isDigest(body.slice(at + 1))) {
    digest = body.slice(at + 1);
    dir = body.slice(0, at);
  } else {
    // The tag follows the last colon, unless that colon belongs to the path (a slash after it).
    const colon = body.lastIndexOf(':');
    if (colon >= 0 && !body.slice(colon + 1).includes('/')) {
      tag = body.slice(colon + 1);
      dir = body.slice(0, colon);
      if (!TAG_RE.test(tag)) throw usage(input, `invalid tag ${JSON.stringify(tag)}`);
    }
  }
  if (dir === '') throw usage(input, 'an OCI layout reference needs a directory: oci:DIR[:TAG]');
  return { kind: 'layout', dir, tag, digest };
}

/**
 * Refuses `user:password@host…`, credentials written into an address, naming it with them
 * redacted: they would otherwise be printed back as part of a reference that does not parse.
 * In a reference (`withDigest`) an `@` at the end may also start a digest: then only one followed
 * by a path, or by a host alone, is taken for credentials.
 */
export function refuseCredentialsIn(input: string, remedy: string, withDigest: boolean): void {
  const scheme = /^(?:https?|docker):\/\//.exec(input)?.[0] ?? '';
  const address = input.slice(scheme.length);
  const slash = address.indexOf('/');
  const first = slash < 0 ? address : address.slice(0, slash);
  const at = first.lastIndexOf('@');
  if (at < 0) return;
  const after = first.slice(at + 1);
  if (withDigest && slash < 0 && (isDigest(after) || !HOST_RE.test(after))) return;
  throw new CkptError('USAGE', `a registry address holds no credentials: ${remedy}`, {
    subject: `${scheme}[redacted]@${address.slice(at + 1)}`,
  });
}

export function parseRegistryReference(input: string): RegistryReference {
  refuseCredentialsIn(input, 'give them with --creds (the option credentials), or store them with ckpt login', true);
  const body = input.startsWith('docker://') ? input.slice('docker://'.length) : input;
  const { name, tag, digest } = splitTagAndDigest(input, body);
  const parts = name.split('/');
  let registry = DOCKER_HUB;
  const first = parts[0] ?? '';
  if (parts.length > 1 && (first.includes('.') || first.includes(':') || first === 'localhost' || first.startsWith('['))) {
    registry = first;
    parts.shift();
  }
  if (!HOST_RE.test(registry)) throw usage(input, `invalid registry host ${JSON.stringify(registry)}`);
  if (registry === 'index.docker.io' || registry === 'registry-1.docker.io') registry = DOCKER_HUB;
  if (parts.length === 0 || parts.some((p) => !REPO_COMPONENT_RE.test(p))) {
    throw usage(input, 'invalid repository name (lower-case letters, digits and separators . _ - /)');
  }
  if (registry === DOCKER_HUB && parts.length === 1) parts.unshift('library');
  const repository = parts.join('/');
  if (repository.length > 255) throw usage(input, 'repository name longer than 255 characters');
  return { kind: 'registry', registry, repository, tag, digest };
}

/**
 * A registry named alone (`ckpt login HOST`): `host[:port]`, a single name such as `myregistry`
 * (a host here, as podman login reads it, where in a reference it would be a Docker Hub
 * repository), or a URL; Docker Hub's aliases become `docker.io`.
 */
export function parseRegistryHost(input: string): string {
  const host = input.replace(/^https?:\/\//, '').replace(/\/+$/, '');
  if (!HOST_RE.test(host)) throw usage(input, `invalid registry host ${JSON.stringify(host)}`);
  return host === 'index.docker.io' || host === 'registry-1.docker.io' ? DOCKER_HUB : host;
}

/** Parses any image reference; `oci:` prefixes a layout, anything else is a registry name. */
export function parseReference(input: string): ImageReference {
  if (input.startsWith('oci:')) return parseLayoutReference(input);
  if (input === '') throw usage(input, 'empty reference');
  return parseRegistryReference(input);
}

/** The tag or digest a reference selects, `latest` where it names neither. */
export function referenceSelector(ref: ImageReference): string {
  return ref.digest ?? ref.tag ?? 'latest';
}

export function formatReference(ref: ImageReference): string {
  const suffix = ref.digest ? `@${ref.digest}` : ref.tag ? `:${ref.tag}` : '';
  return ref.kind === 'layout' ? `oci:${ref.dir}${suffix}` : `${ref.registry}/${ref.repository}${suffix}`;
}
