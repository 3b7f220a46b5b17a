import { pipeline } from 'node:stream/promises';
import { ByteMeter } from '../content/meter.js';
import { z } from 'zod';
import type { CheckpointSource } from '../checkpoint/entry.js';
import { interpretScan } from '../checkpoint/metadata.js';
import { type OpenCheckpointOptions, openCheckpoint } from '../checkpoint/open.js';
import { CheckpointScanner } from '../checkpoint/scan.js';
import { type CheckpointMetadata, CheckpointMetadataSchema, HostInfoSchema } from '../checkpoint/schemas.js';
import { ImageSource } from '../checkpoint/sources/image.js';
import { CkptAnnotation, recordedHostInfo } from '../image/annotations.js';
import { CHECKPOINT_ARTIFACT_TYPE } from '../oci/mediatypes.js';
import { DescriptorSchema } from '../oci/schemas.js';
import { REGISTRY_ACCESS_NAMES } from '../target/open.js';
import { type OptionsSpec, optionNames, runCommand } from './run-command.js';

/** How inspect reads; it counts the bytes it fetches itself (`fetchedBytes`). */
export type InspectOptions = Omit<OpenCheckpointOptions, 'meter'>;

const OPTIONS: OptionsSpec = { kind: 'command', names: optionNames<InspectOptions>({ ...REGISTRY_ACCESS_NAMES, signal: true, platform: true }) };

/** What `ckpt inspect --json` prints (schemas/inspect.schema.json). */
export const InspectResultSchema = z.object({
  source: z.string().describe('the path or reference inspected'),
  kind: z.enum(['archive', 'directory', 'image']),
  image: z
    .object({
      digest: z.string(),
      index: z.string().optional().describe('the image index the reference names, where it is one (built with --compat containerd): its digest is the one to pull by'),
      mediaType: z.string(),
      artifactType: z.string().optional(),
      annotations: z.record(z.string(), z.string()),
      layers: z.array(DescriptorSchema),
      size: z.number().int().describe('sum of the compressed layer sizes'),
      recordedHost: HostInfoSchema.optional().describe(
        'what the annotations record of the node: the one that built the image (ckpt build, Podman --create-image), which should be the one that made the checkpoint',
      ),
    })
    .optional()
    .describe('for a checkpoint image: its manifest and layers'),
  metadata: CheckpointMetadataSchema,
  fetchedBytes: z.number().int().optional().describe('bytes of manifests and blobs read from an image source'),
});
export type InspectResult = z.infer<typeof InspectResultSchema>;

/** Reads every entry the scanner wants and skips the rest without reading it. */
async function scan(source: CheckpointSource, signal: AbortSignal | undefined): Promise<CheckpointMetadata> {
  const scanner = new CheckpointScanner(source.name);
  for await (const { entry, open } of source.entries(signal)) {
    const tap = scanner.observe(entry);
    if (tap && open) await pipeline(open(), tap, { signal });
  }
  return interpretScan(await scanner.result(), source.name);
}

function number(annotations: Record<string, string>, key: string): number | undefined {
  const value = annotations[key];
  return value !== undefined && /^\d+$/.test(value) ? Number(value) : undefined;
}

/** Completes what the metadata layer says with what our annotations record about the other layers. */
function fromAnnotations(meta: CheckpointMetadata, annotations: Record<string, string>): CheckpointMetadata {
  const files = number(annotations, CkptAnnotation.rootfsDiffFiles);
  const bytes = number(annotations, CkptAnnotation.rootfsDiffBytes);
  // Images from before this annotation existed say 0: the archive is in a layer inspect skips.
  const archiveBytes = number(annotations, CkptAnnotation.rootfsDiffArchiveBytes) ?? meta.rootfsDiff?.archiveBytes ?? 0;
  let deletedFiles = meta.deletedFiles;
  try {
    const listed: unknown = JSON.parse(annotations[CkptAnnotation.deletedFiles] ?? '[]');
    if (Array.isArray(listed)) deletedFiles = listed.filter((f): f is string => typeof f === 'string');
  } catch {
    // A damaged annotation only costs the list of deleted files.
  }
  return {
    ...meta,
    memory: {
      bytes: number(annotations, CkptAnnotation.memoryBytes) ?? meta.memory.bytes,
      files: number(annotations, CkptAnnotation.memoryFiles) ?? meta.memory.files,
    },
    rootfsDiff: files !== undefined && bytes !== undefined ? { archiveBytes, files, bytes } : meta.rootfsDiff,
    deletedFiles,
    files: {
      count: number(annotations, CkptAnnotation.filesCount) ?? meta.files.count,
      bytes: number(annotations, CkptAnnotation.filesBytes) ?? meta.files.bytes,
    },
  };
}

/**
 * Describes a checkpoint: container, pod, image, engine, CRIU, processes, memory and file-system
 * diff. From a checkpoint image made by ckpt it reads the manifest, the config and the metadata
 * layer only, never the memory pages.
 */
export function inspect(input: string, options: InspectOptions = {}): Promise<InspectResult> {
  return runCommand(OPTIONS, { source: input }, options, (checked) => inspectChecked(input, checked));
}

async function inspectChecked(input: string, options: InspectOptions): Promise<InspectResult> {
  const meter = new ByteMeter();
  const source = await openCheckpoint(input, { ...options, meter });
  try {
    const result = await describe(input, source, options);
    return source.kind === 'image' ? { ...result, fetchedBytes: meter.bytes } : result;
  } finally {
    await source.close?.();
  }
}

async function describe(input: string, source: CheckpointSource, options: InspectOptions): Promise<InspectResult> {
  if (!(source instanceof ImageSource)) {
    return { source: input, kind: source.kind, metadata: await scan(source, options.signal) };
  }
  const { manifest, manifestDesc, root } = source.image;
  const annotations = manifest.annotations ?? {};
  const ours = manifest.artifactType === CHECKPOINT_ARTIFACT_TYPE;
  const layers = ours ? manifest.layers.filter((l) => l.annotations?.[CkptAnnotation.layer] === 'metadata') : manifest.layers;
  const scanned = await scan(new ImageSource(source.name, source.target, source.image, layers), options.signal);
  const metadata = ours ? fromAnnotations(scanned, annotations) : scanned;
  const recordedHost = recordedHostInfo(annotations);
  // Without dump.log (Podman's --create-image leaves it out), the annotations still name CRIU's version.
  const criuVersion = metadata.criu.version ?? recordedHost?.criuVersion;
  return {
    source: input,
    kind: 'image',
    image: {
      digest: manifestDesc.digest,
      ...(root.digest !== manifestDesc.digest ? { index: root.digest } : {}),
      mediaType: manifestDesc.mediaType,
      artifactType: manifest.artifactType,
      annotations,
      layers: manifest.layers,
      size: manifest.layers.reduce((sum, l) => sum + l.size, 0),
      ...(recordedHost ? { recordedHost } : {}),
    },
    metadata: criuVersion ? { ...metadata, criu: { ...metadata.criu, version: criuVersion } } : metadata,
  };
}
