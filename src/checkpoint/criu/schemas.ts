import { z } from 'zod';

/**
 * What ckpt reads out of CRIU's image files (decoded in images.ts) and its dump.log. Names follow
 * CRIU's .proto fields in camelCase; a field the image did not carry is left undefined.
 */

const u32 = z.number().int().min(0).max(0xffff_ffff);
/** uint64 counters, kept as numbers: the decoder refuses anything past 2^53. */
const u64 = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

/** Go/OCI architecture names (GOARCH), as an OCI image's `architecture` wants them. */
export const GoArchSchema = z.enum(['amd64', 'arm64', 'arm', 'ppc64le', 's390x', 'mips64le', 'loong64', 'riscv64']);
export type GoArch = z.infer<typeof GoArchSchema>;

/** inventory.img: the image set's version and the dump-wide settings. */
export const InventorySchema = z.object({
  imgVersion: u32,
  fdinfoPerId: z.boolean().optional(),
  /** Whether the root task's namespace and object ids were recorded (`root_ids`). */
  hasRootIds: z.boolean(),
  nsPerId: z.boolean().optional(),
  rootCgSet: u32.optional(),
  /** 0 none, 1 SELinux, 2 AppArmor. */
  lsmtype: u32.optional(),
  dumpUptime: u64.optional(),
  preDumpMode: u32.optional(),
  tcpClose: z.boolean().optional(),
  networkLockMethod: u32.optional(),
  /** Names of the CRIU plugins that took part in the dump; recent CRIU versions only. */
  plugins: z.array(z.string()).optional(),
  /** UUID of the `criu dump` run; recent CRIU versions only. */
  dumpCriuRunId: z.string().optional(),
});
export type Inventory = z.infer<typeof InventorySchema>;

/** One process of pstree.img; pids are as seen inside the dumped pid namespace. */
export const PstreeEntrySchema = z.object({
  pid: u32,
  ppid: u32,
  pgid: u32,
  sid: u32,
  threads: z.array(u32),
});
export type PstreeEntry = z.infer<typeof PstreeEntrySchema>;

/** CRIU's task states (compel/task-state.h and criu/include/pid.h). */
export const TaskStateNameSchema = z.enum(['alive', 'dead', 'stopped', 'zombie', 'helper', 'thread']);
export type TaskStateName = z.infer<typeof TaskStateNameSchema>;

/** core-<pid>.img, reduced to what identifies the task. */
export const CoreSchema = z.object({
  /** CRIU's `core_entry.march` value. */
  mtype: u32,
  /** Undefined when `mtype` is UNKNOWN or an architecture newer than this decoder. */
  architecture: GoArchSchema.optional(),
  /** The task's command name: from `tc`, else from `thread_core` (images of non-leader threads). */
  comm: z.string().optional(),
  /** Present with `tc`, i.e. for thread-group leaders. */
  taskState: u32.optional(),
  taskStateName: TaskStateNameSchema.optional(),
  exitCode: u32.optional(),
});
export type Core = z.infer<typeof CoreSchema>;

/** stats-dump: how the dump went. Times are microseconds, counts are pages of the host's page size. */
export const DumpStatsSchema = z.object({
  freezingTime: u32,
  frozenTime: u32,
  memdumpTime: u32,
  memwriteTime: u32,
  pagesScanned: u64,
  pagesSkippedParent: u64,
  pagesWritten: u64,
  irmapResolve: u32.optional(),
  pagesLazy: u64,
  pagePipes: u64.optional(),
  pagePipeBufs: u64.optional(),
  shpagesScanned: u64.optional(),
  shpagesSkippedParent: u64.optional(),
  shpagesWritten: u64.optional(),
});
export type DumpStats = z.infer<typeof DumpStatsSchema>;

/** What the head of a dump.log says about the CRIU run; each line may be missing. */
export const DumpLogInfoSchema = z.object({
  /** As CRIU printed it, e.g. `4.1.1`. */
  criuVersion: z.string().optional(),
  hostname: z.string().optional(),
  /** The kernel release (`uname -r`). */
  kernel: z.string().optional(),
  /** The machine as the kernel names it (`uname -m`: `x86_64`, `aarch64`), not a Go name. */
  arch: z.string().optional(),
});
export type DumpLogInfo = z.infer<typeof DumpLogInfoSchema>;
