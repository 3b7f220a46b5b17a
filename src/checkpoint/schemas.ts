import { z } from 'zod';
import { DumpStatsSchema } from './criu/schemas.js';

/** zod schemas of what ckpt reads from a checkpoint and reports about it; types are inferred. */

export const EngineSchema = z.enum(['podman', 'cri-o', 'containerd', 'criu']);
export type Engine = z.infer<typeof EngineSchema>;

/** `config.dump` as the engines write it: only the keys ckpt reads; the rest pass through. */
export const ConfigDumpSchema = z
  .object({
    id: z.string().optional(),
    name: z.string().optional(),
    rootfsImage: z.string().optional(),
    rootfsImageRef: z.string().optional(),
    rootfsImageName: z.string().optional(),
    rootfsImageID: z.string().optional(),
    RawImageName: z.string().optional(),
    runtime: z.string().optional(),
    createdTime: z.string().optional(),
    checkpointedTime: z.string().optional(),
    pod: z.string().optional(),
    cgroupsMode: z.string().optional(),
  })
  .loose();
export type ConfigDump = z.infer<typeof ConfigDumpSchema>;

/** `spec.dump`: the container's OCI runtime spec; ckpt reads its annotations and process. */
export const SpecDumpSchema = z
  .object({
    annotations: z.record(z.string(), z.string()).optional(),
    process: z.object({ args: z.array(z.string()).optional() }).loose().optional(),
    hostname: z.string().optional(),
  })
  .loose();
export type SpecDump = z.infer<typeof SpecDumpSchema>;

export const DeletedFilesSchema = z.array(z.string());

export const BindMountsSchema = z.array(
  z.object({ source: z.string(), destination: z.string(), file_type: z.string().optional(), permissions: z.number().optional() }).loose(),
);

export const ProcessSchema = z.object({
  pid: z.number().int(),
  ppid: z.number().int(),
  pgid: z.number().int(),
  sid: z.number().int(),
  threads: z.number().int(),
  command: z.string().optional(),
});
export type ProcessInfo = z.infer<typeof ProcessSchema>;

/** The node a checkpoint was made on, as far as it is known. */
export const HostInfoSchema = z.object({
  criuVersion: z.string().optional().describe('CRIU version, e.g. 4.1.1'),
  kernel: z.string().optional(),
  architecture: z.string().optional().describe('OCI architecture name, e.g. amd64'),
  cgroupVersion: z.enum(['v1', 'v2']).optional(),
  distribution: z.object({ name: z.string().optional(), version: z.string().optional() }).optional(),
  hostname: z.string().optional(),
  engineVersion: z.string().optional().describe('podman, crio or containerd version'),
  runtimeVersion: z.string().optional().describe('first line of `<runtime> --version`'),
  conmonVersion: z.string().optional(),
});
export type HostInfo = z.infer<typeof HostInfoSchema>;

export const CheckpointMetadataSchema = z.object({
  engine: EngineSchema.describe('the program that made the checkpoint; criu for a raw `criu dump`'),
  /** Where the CRIU images live in the tree: `checkpoint/` for engines, the root for raw CRIU. */
  criuDir: z.string(),
  container: z.object({ id: z.string().optional(), name: z.string().optional() }),
  pod: z
    .object({ name: z.string().optional(), namespace: z.string().optional(), uid: z.string().optional(), id: z.string().optional() })
    .optional(),
  image: z.object({
    name: z.string().optional().describe('base image name'),
    id: z.string().optional().describe('base image ID'),
    reference: z.string().optional().describe('base image reference, by digest where the engine recorded one'),
    requested: z.string().optional().describe('the image name as the user asked for it'),
  }),
  runtime: z.string().optional(),
  command: z.array(z.string()).optional(),
  created: z.string().optional().describe('RFC 3339 time the container was created'),
  checkpointed: z.string().optional().describe("RFC 3339 time of the checkpoint; for a raw criu dump, which records none, inventory.img's modification time"),
  architecture: z.string().optional().describe('OCI architecture of the checkpointed processes'),
  criu: z.object({
    version: z.string().optional(),
    imageVersion: z.number().optional(),
    runId: z.string().optional(),
  }),
  dumpHost: HostInfoSchema.optional().describe('what the checkpoint itself says about the node (dump.log)'),
  processes: z.array(ProcessSchema),
  memory: z.object({ bytes: z.number().int(), files: z.number().int() }).describe("the dump's memory pages (pages-*.img; a pre-dump's, in pre-checkpoint/, are not counted)"),
  rootfsDiff: z
    .object({ archiveBytes: z.number().int(), files: z.number().int(), bytes: z.number().int() })
    .optional()
    .describe('rootfs-diff.tar: its size, and the files and bytes it adds or changes'),
  deletedFiles: z.array(z.string()),
  bindMounts: z.array(z.string()).optional(),
  stats: DumpStatsSchema.optional().describe('CRIU dump statistics from stats-dump (times in microseconds)'),
  files: z.object({ count: z.number().int(), bytes: z.number().int() }).describe('the whole checkpoint tree'),
  restorableBy: z.array(z.string()).describe('runtimes that can restore this checkpoint'),
});
export type CheckpointMetadata = z.infer<typeof CheckpointMetadataSchema>;
