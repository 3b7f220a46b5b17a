import { formatCriuVersion, parseCriuVersion } from '../checkpoint/criu/images.js';
import { definedOnly } from '../checkpoint/metadata.js';
import type { CheckpointMetadata, Engine, HostInfo } from '../checkpoint/schemas.js';
import { Annotation } from '../oci/mediatypes.js';
import { CkptError } from '../errors.js';

/** Which runtimes' annotation families an image carries. */
export type Compat = 'auto' | 'crio' | 'podman' | 'containerd' | 'all';
export const COMPATS: readonly Compat[] = ['auto', 'crio', 'podman', 'containerd', 'all'];
export type Family = 'crio' | 'podman' | 'containerd';

export const PODMAN_PREFIX = 'io.podman.annotations.checkpoint.';
export const CRIO_PREFIX = 'io.kubernetes.cri-o.annotations.checkpoint.';
export const CRIU_PREFIX = 'org.criu.checkpoint.';
export const CKPT_PREFIX = 'dev.ckpt.';

/** Our own keys (documented in schemas/annotations.md). */
export const CkptAnnotation = {
  format: `${CKPT_PREFIX}format`,
  engine: `${CKPT_PREFIX}engine`,
  restorableBy: `${CKPT_PREFIX}restorable-by`,
  processes: `${CKPT_PREFIX}processes`,
  memoryBytes: `${CKPT_PREFIX}memory.bytes`,
  memoryFiles: `${CKPT_PREFIX}memory.files`,
  rootfsDiffFiles: `${CKPT_PREFIX}rootfs-diff.files`,
  rootfsDiffBytes: `${CKPT_PREFIX}rootfs-diff.bytes`,
  rootfsDiffArchiveBytes: `${CKPT_PREFIX}rootfs-diff.archive-bytes`,
  deletedFiles: `${CKPT_PREFIX}deleted-files`,
  filesCount: `${CKPT_PREFIX}files.count`,
  filesBytes: `${CKPT_PREFIX}files.bytes`,
  layer: `${CKPT_PREFIX}layer`,
} as const;

const ENGINE_FAMILY: Record<Engine, Family[]> = {
  podman: ['podman'],
  'cri-o': ['crio'],
  containerd: ['containerd'],
  criu: [],
};

export function familiesFor(compat: Compat, engine: Engine): Family[] {
  if (compat === 'auto') return ENGINE_FAMILY[engine];
  if (compat === 'all') return ['crio', 'podman', 'containerd'];
  return [compat];
}

/** Deleted files are listed in an annotation up to this many, so inspect needs no layer for them. */
const DELETED_FILES_LISTED = 100;

export interface ImageAnnotations {
  manifest: Record<string, string>;
  /** Present when the containerd family is wanted: containerd reads the index at the tag. */
  index?: Record<string, string>;
  /**
   * The manifest's annotations again, as the image config's labels: runtimes key images by config
   * digest (Podman's image ID, CRI's grouping), so images that differ only in annotations (another
   * `--compat`, a user annotation) must not share a config.
   */
  labels: Record<string, string>;
}

function criuVersionNumber(meta: CheckpointMetadata, host: HostInfo | undefined): string {
  const version = meta.criu.version ?? host?.criuVersion;
  try {
    return version ? String(parseCriuVersion(version)) : '';
  } catch {
    // A version CRIU never printed (a local build's suffix) is recorded as unknown, not fatal.
    return '';
  }
}

/** The complete org.criu.checkpoint.* set: every key, empty where the value is unknown. */
function criuFamily(meta: CheckpointMetadata, host: HostInfo | undefined): Record<string, string> {
  const reference = meta.image.reference ?? '';
  const digest = /@(sha256:[a-f0-9]{64})$/.exec(reference)?.[1] ?? '';
  const kernel = meta.dumpHost?.kernel ?? host?.kernel ?? '';
  const values: Record<string, string> = {
    'engine.name': meta.engine,
    'engine.version': host?.engineVersion ?? '',
    'container.name': meta.container.name ?? '',
    'pod.name': meta.pod?.name ?? '',
    'pod.id': meta.pod?.id ?? '',
    'pod.namespace': meta.pod?.namespace ?? '',
    'pod.uid': meta.pod?.uid ?? '',
    rootfsImageName: meta.image.name ?? '',
    rootfsImageUserRequested: meta.image.requested ?? '',
    rootfsImageSha: digest,
    rootfsImageID: meta.image.id ?? '',
    rawImageName: meta.image.requested ?? meta.image.name ?? '',
    'runtime.name': meta.runtime ?? '',
    'runtime.version': host?.runtimeVersion ?? '',
    'criu.version': criuVersionNumber(meta, host),
    'conmon.version': host?.conmonVersion ?? '',
    'host.arch': meta.architecture ?? host?.architecture ?? '',
    'host.kernel': kernel,
    'cgroup.version': host?.cgroupVersion ?? '',
    'distribution.name': host?.distribution?.name ?? '',
    'distribution.version': host?.distribution?.version ?? '',
  };
  return prefixed(CRIU_PREFIX, values);
}

/**
 * What a checkpoint image's annotations say about the node that made the checkpoint (any family,
 * org.criu first): the facts a rebuild of that image keeps, wherever it runs.
 */
export function recordedHostInfo(annotations: Record<string, string>): HostInfo | undefined {
  const pick = (...keys: string[]) => keys.map((key) => annotations[key]).find((value) => value !== undefined && value !== '');
  const any = (suffix: string) => pick(CRIU_PREFIX + suffix, PODMAN_PREFIX + suffix, CRIO_PREFIX + suffix);
  const criu = any('criu.version');
  const cgroup = pick(`${CRIU_PREFIX}cgroup.version`, `${PODMAN_PREFIX}cgroups.version`);
  return definedOnly<HostInfo>({
    criuVersion: criu && /^\d+$/.test(criu) ? formatCriuVersion(Number(criu)) : undefined,
    kernel: any('host.kernel'),
    architecture: any('host.arch'),
    cgroupVersion: cgroup === 'v1' || cgroup === 'v2' ? cgroup : undefined,
    distribution: definedOnly({ name: any('distribution.name'), version: any('distribution.version') }),
    engineVersion: pick(`${CRIU_PREFIX}engine.version`, `${PODMAN_PREFIX}podman.version`, `${CRIO_PREFIX}cri-o.version`),
    runtimeVersion: any('runtime.version'),
    conmonVersion: any('conmon.version'),
  });
}

function prefixed(prefix: string, values: Record<string, string | undefined>, dropEmpty = false): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(values)) {
    if (value === undefined || (dropEmpty && value === '')) continue;
    out[prefix + key] = value;
  }
  return out;
}

/** The keys Podman reads; runtime.name must equal the restoring host's OCI runtime. */
function podmanFamily(meta: CheckpointMetadata, host: HostInfo | undefined): Record<string, string> {
  return prefixed(
    PODMAN_PREFIX,
    {
      name: meta.container.name ?? '',
      rawImageName: meta.image.requested ?? meta.image.name,
      rootfsImageID: meta.image.id,
      rootfsImageName: meta.image.name,
      'podman.version': meta.engine === 'podman' ? host?.engineVersion : undefined,
      'criu.version': criuVersionNumber(meta, host),
      'runtime.name': meta.runtime,
      'runtime.version': host?.runtimeVersion,
      'conmon.version': host?.conmonVersion,
      'host.arch': meta.architecture ?? host?.architecture,
      'host.kernel': meta.dumpHost?.kernel ?? host?.kernel,
      'cgroups.version': host?.cgroupVersion,
      'distribution.name': host?.distribution?.name,
      'distribution.version': host?.distribution?.version,
    },
    true,
  );
}

/** CRI-O only looks for `name`; the rest is informational, as CRI-O itself writes it. */
function crioFamily(meta: CheckpointMetadata, host: HostInfo | undefined): Record<string, string> {
  return prefixed(
    CRIO_PREFIX,
    {
      name: meta.container.name ?? '',
      rawImageName: meta.image.requested ?? meta.image.name,
      rootfsImageID: meta.image.id,
      rootfsImageName: meta.image.name,
      'cri-o.version': meta.engine === 'cri-o' ? host?.engineVersion : undefined,
      'criu.version': criuVersionNumber(meta, host),
    },
    true,
  );
}

function ckptKeys(meta: CheckpointMetadata): Record<string, string> {
  const keys: Record<string, string> = {
    [CkptAnnotation.format]: '1',
    [CkptAnnotation.engine]: meta.engine,
    [CkptAnnotation.restorableBy]: meta.restorableBy.join(','),
    [CkptAnnotation.processes]: String(meta.processes.length),
    [CkptAnnotation.memoryBytes]: String(meta.memory.bytes),
    [CkptAnnotation.memoryFiles]: String(meta.memory.files),
    [CkptAnnotation.deletedFiles]: JSON.stringify(meta.deletedFiles.slice(0, DELETED_FILES_LISTED)),
    [CkptAnnotation.filesCount]: String(meta.files.count),
    [CkptAnnotation.filesBytes]: String(meta.files.bytes),
  };
  if (meta.rootfsDiff) {
    keys[CkptAnnotation.rootfsDiffFiles] = String(meta.rootfsDiff.files);
    keys[CkptAnnotation.rootfsDiffBytes] = String(meta.rootfsDiff.bytes);
    keys[CkptAnnotation.rootfsDiffArchiveBytes] = String(meta.rootfsDiff.archiveBytes);
  }
  return keys;
}

/** RFC 3339 with a `T`, as Go's time.Parse(time.RFC3339) reads it in containers/image and umoci. */
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})$/i;

/**
 * Refuses annotations given by the user that would break the image: `created` also becomes the
 * config's time, which every containers/image reader parses.
 */
export function assertUserAnnotations(user: Record<string, string> = {}): void {
  const created = user[Annotation.created];
  if (created !== undefined && (!RFC3339.test(created) || Number.isNaN(Date.parse(created)))) {
    throw new CkptError('USAGE', `annotation ${Annotation.created} must be an RFC 3339 time such as 2026-11-27T13:34:00Z, not ${JSON.stringify(created)}`);
  }
}

/** The keys each runtime recognises a checkpoint image by (FORMATS.md, section 2). */
const RECOGNISED_BY: Record<Family, string[]> = {
  crio: [`${CRIO_PREFIX}name`],
  podman: [`${PODMAN_PREFIX}name`, `${PODMAN_PREFIX}runtime.name`],
  containerd: [`${CRIU_PREFIX}container.name`],
};

/**
 * A family asked for by name that the checkpoint cannot fill (a raw `criu dump` has no container
 * name, so no runtime would recognise it) is refused rather than written as keys no one reads.
 */
export function assertRecognisable(compat: Exclude<Compat, 'auto'>, annotations: Record<string, string>): void {
  for (const family of familiesFor(compat, 'criu')) {
    const missing = RECOGNISED_BY[family].filter((key) => !annotations[key]);
    if (missing.length > 0) {
      throw new CkptError(
        'USAGE',
        `--compat ${compat} (compat): this checkpoint has no value for ${missing.join(', ')}, by which ${family} recognises a checkpoint image (a raw CRIU dump restores only with criu restore)`,
      );
    }
  }
}

/**
 * Every annotation of a checkpoint image: the families the chosen runtimes read, the full
 * org.criu.checkpoint.* set, the OCI predefined keys, ours, then the user's (which win).
 */
export function imageAnnotations(
  meta: CheckpointMetadata,
  host: HostInfo | undefined,
  compat: Compat,
  user: Record<string, string> = {},
): ImageAnnotations {
  const families = familiesFor(compat, meta.engine);
  const criu = criuFamily(meta, host);
  const oci: Record<string, string> = {
    [Annotation.created]: meta.checkpointed ?? meta.created ?? new Date(0).toISOString(),
    [Annotation.baseName]: meta.image.name ?? '',
  };
  const baseDigest = criu[`${CRIU_PREFIX}rootfsImageSha`];
  if (baseDigest) oci[Annotation.baseDigest] = baseDigest;
  const manifest = {
    ...oci,
    ...(families.includes('crio') ? crioFamily(meta, host) : {}),
    ...(families.includes('podman') ? podmanFamily(meta, host) : {}),
    ...criu,
    ...ckptKeys(meta),
    ...user,
  };
  const index = families.includes('containerd') ? { ...oci, ...criu, ...user } : undefined;
  if (compat !== 'auto') assertRecognisable(compat, { ...manifest, ...index });
  const labels = Object.fromEntries(Object.entries(manifest).filter(([, v]) => v !== ''));
  return {
    manifest,
    index,
    labels,
  };
}
