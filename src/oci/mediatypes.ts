/** Media types and annotation keys defined by the OCI image spec that ckpt reads or writes. */
export const MediaType = {
  imageManifest: 'application/vnd.oci.image.manifest.v1+json',
  imageIndex: 'application/vnd.oci.image.index.v1+json',
  imageConfig: 'application/vnd.oci.image.config.v1+json',
  empty: 'application/vnd.oci.empty.v1+json',
  layerTar: 'application/vnd.oci.image.layer.v1.tar',
  layerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  layerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const;

/** The artifactType that marks a manifest as a ckpt checkpoint image. */
export const CHECKPOINT_ARTIFACT_TYPE = 'application/vnd.ckpt.checkpoint.v1';

export const MANIFEST_MEDIA_TYPES: readonly string[] = [MediaType.imageManifest, MediaType.dockerManifest];
export const INDEX_MEDIA_TYPES: readonly string[] = [MediaType.imageIndex, MediaType.dockerManifestList];

export function isManifestType(mediaType: string): boolean {
  return MANIFEST_MEDIA_TYPES.includes(mediaType);
}

export function isIndexType(mediaType: string): boolean {
  return INDEX_MEDIA_TYPES.includes(mediaType);
}

/** Compression of a tar layer, from its media type; undefined for a type that is not a tar layer. */
export function layerCompression(mediaType: string): 'none' | 'gzip' | 'zstd' | undefined {
  if (mediaType === MediaType.dockerLayerGzip) return 'gzip';
  const m = /^application\/vnd\.oci\.image\.layer\.(?:nondistributable\.)?v1\.tar(\+gzip|\+zstd)?$/.exec(mediaType);
  if (!m) return undefined;
  return m[1] === '+gzip' ? 'gzip' : m[1] === '+zstd' ? 'zstd' : 'none';
}

export const Annotation = {
  created: 'org.opencontainers.image.created',
  refName: 'org.opencontainers.image.ref.name',
  title: 'org.opencontainers.image.title',
  baseName: 'org.opencontainers.image.base.name',
  baseDigest: 'org.opencontainers.image.base.digest',
} as const;
