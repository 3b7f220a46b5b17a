import type { CheckpointSource } from '../checkpoint/entry.js';
import { collectHostInfo } from '../checkpoint/host.js';
import { interpretScan } from '../checkpoint/metadata.js';
import { CheckpointScanner, type LayerRole, layerRole } from '../checkpoint/scan.js';
import type { CheckpointMetadata, HostInfo } from '../checkpoint/schemas.js';
import type { Compression } from '../compress/codec.js';
import { pushJson } from '../content/push-json.js';
import type { Target, TransferOptions } from '../content/target.js';
import { Annotation, CHECKPOINT_ARTIFACT_TYPE, MediaType } from '../oci/mediatypes.js';
import type { Descriptor, ImageConfig, Index, Manifest } from '../oci/schemas.js';
import { type Compat, CkptAnnotation, imageAnnotations } from './annotations.js';
import { LayerWriter, type WrittenLayer } from './layer.js';

export interface BuildImageOptions extends TransferOptions {
  /** Layer compression; zstd by default. */
  compression?: Compression;
  /** Compression level (zstd 1-19, gzip 1-9). */
  level?: number;
  /** Annotation families to write; `auto` picks the checkpoint's own engine. */
  compat?: Compat;
  /** Extra manifest annotations; they override ours. */
  annotations?: Record<string, string>;
  /** Record this node's CRIU, kernel, cgroup and distribution (default true). */
  hostInfo?: boolean;
  /** Upper bound of a memory-pages layer, in bytes of content; a larger file gets a layer alone. */
  maxLayerBytes?: number;
  /** Tag to point at the image once every blob is in place. */
  tag?: string;
}

export interface BuildImageResult {
  /** What the tag points to: the manifest, or for containerd an index around it. */
  descriptor: Descriptor;
  manifest: Descriptor;
  config: Descriptor;
  layers: WrittenLayer[];
  metadata: CheckpointMetadata;
  host?: HostInfo;
}

export const DEFAULT_MAX_LAYER_BYTES = 256 * 1024 * 1024;

const HISTORY: Record<LayerRole, string> = {
  metadata: 'ckpt build: checkpoint metadata and CRIU images',
  pages: 'ckpt build: memory pages',
  'rootfs-diff': 'ckpt build: container file-system changes',
};

/**
 * Writes the layers of a checkpoint image while reading its source once: each entry goes to the
 * layer of its role, page layers are cut at a size bound, and every layer streams to the store as
 * it is compressed.
 */
async function writeLayers(
  source: CheckpointSource,
  target: Target,
  scanner: CheckpointScanner,
  options: BuildImageOptions,
): Promise<WrittenLayer[]> {
  const compression = options.compression ?? 'zstd';
  const transfer: TransferOptions = { signal: options.signal, onProgress: options.onProgress };
  const maxLayerBytes = options.maxLayerBytes ?? DEFAULT_MAX_LAYER_BYTES;
  let count = 0;
  const newLayer = (role: LayerRole) => new LayerWriter(role, `layer ${++count} (${role})`, target, compression, options.level, transfer);
  const metadata = newLayer('metadata');
  const pages: LayerWriter[] = [];
  let rootfs: LayerWriter | undefined;
  const all = () => [metadata, ...pages, ...(rootfs ? [rootfs] : [])];
  // Full page layers are closed at once, so their uploads finish while the next ones fill.
  const closed = new Map<LayerWriter, Promise<WrittenLayer>>();
  const close = (layer: LayerWriter): Promise<WrittenLayer> => {
    let done = closed.get(layer);
    if (!done) closed.set(layer, (done = layer.close()));
    return done;
  };
  try {
    for await (const { entry, open } of source.entries(options.signal)) {
      const role = layerRole(entry.path);
      let layer = metadata;
      if (role === 'pages') {
        const current = pages.at(-1);
        if (current && current.contentBytes + entry.size <= maxLayerBytes) {
          layer = current;
        } else {
          if (current) void close(current).catch(() => undefined);
          layer = newLayer('pages');
          pages.push(layer);
        }
      } else if (role === 'rootfs-diff') {
        rootfs ??= newLayer('rootfs-diff');
        layer = rootfs;
      }
      await layer.add(entry, open?.(), scanner.observe(entry));
    }
    return await Promise.all(all().map(close));
  } catch (err) {
    for (const layer of all()) layer.abort(err as Error);
    await Promise.allSettled(all().map(close));
    throw err;
  }
}

/**
 * Builds a checkpoint image from any checkpoint source into any target (an OCI layout or a
 * registry): layers first, then the config, the manifest, an index where containerd needs one,
 * and the tag last, so the tag never points at anything incomplete.
 */
export async function buildImage(source: CheckpointSource, target: Target, options: BuildImageOptions = {}): Promise<BuildImageResult> {
  const scanner = new CheckpointScanner(source.name);
  const layers = await writeLayers(source, target, scanner, options);
  const metadata = interpretScan(await scanner.result(), source.name);
  const host = options.hostInfo === false ? undefined : await collectHostInfo(metadata.engine, metadata.runtime, options.signal);
  const annotations = imageAnnotations(metadata, host, options.compat ?? 'auto', options.annotations);
  const created = annotations.manifest[Annotation.created];
  const transfer: TransferOptions = { signal: options.signal, onProgress: options.onProgress };
  const platform = { architecture: metadata.architecture ?? host?.architecture ?? 'amd64', os: 'linux' };

  const config: ImageConfig = {
    created,
    ...platform,
    config: { Labels: annotations.labels },
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    history: layers.map((l) => ({ created, created_by: HISTORY[l.role] })),
  };
  const configDesc = (await pushJson(target, MediaType.imageConfig, config, transfer)).desc;
  const manifest: Manifest = {
    schemaVersion: 2,
    mediaType: MediaType.imageManifest,
    artifactType: CHECKPOINT_ARTIFACT_TYPE,
    config: configDesc,
    layers: layers.map((l) => ({ ...l.desc, annotations: { [CkptAnnotation.layer]: l.role } })),
    annotations: annotations.manifest,
  };
  const manifestDesc = (await pushJson(target, MediaType.imageManifest, manifest, transfer)).desc;
  let descriptor: Descriptor = { ...manifestDesc, artifactType: CHECKPOINT_ARTIFACT_TYPE };
  if (annotations.index) {
    const index: Index = {
      schemaVersion: 2,
      mediaType: MediaType.imageIndex,
      manifests: [{ ...descriptor, platform }],
      annotations: annotations.index,
    };
    descriptor = (await pushJson(target, MediaType.imageIndex, index, transfer)).desc;
  }
  if (options.tag) await target.tag(descriptor, options.tag, transfer);
  return { descriptor, manifest: manifestDesc, config: configDesc, layers, metadata, host };
}
