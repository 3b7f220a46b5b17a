import { CkptError } from '../../errors.js';
import type { Core, DumpLogInfo, DumpStats, GoArch, Inventory, PstreeEntry, TaskStateName } from './schemas.js';
import { type WireField, WireReader } from './wire.js';

/**
 * Decoders for the few CRIU image files ckpt shows to users. An image is one or two u32 LE magic
 * numbers, then entries, each a u32 LE length and one protobuf message (criu/image.c,
 * criu/protobuf.c). Field numbers are those of CRIU's images/*.proto.
 */

/** Magic numbers from criu/include/magic.h. */
export const CriuMagic = {
  /** Heads every image file except inventory.img. */
  imgCommon: 0x54564319,
  /** Heads CRIU's service files (stats-dump, irmap-cache) instead of imgCommon. */
  imgService: 0x55105940,
  inventory: 0x58313116,
  pstree: 0x50273030,
  core: 0x55053847,
  stats: 0x57093306,
} as const;

/** The magic numbers each image starts with: CRIU writes no head magic to inventory.img. */
const IMAGE_MAGICS = {
  inventory: [CriuMagic.inventory],
  pstree: [CriuMagic.imgCommon, CriuMagic.pstree],
  core: [CriuMagic.imgCommon, CriuMagic.core],
  stats: [CriuMagic.imgService, CriuMagic.stats],
} as const;
export type ImageKind = keyof typeof IMAGE_MAGICS;

/** CRIU's core_entry.march values mapped to GOARCH. */
const MARCH_GOARCH: Record<number, GoArch> = {
  1: 'amd64',
  2: 'arm',
  3: 'arm64',
  4: 'ppc64le', // CRIU supports little-endian ppc64 only
  5: 's390x',
  6: 'mips64le', // CRIU supports mips64el only
  7: 'loong64',
  8: 'riscv64',
};

/** compel/task-state.h and criu/include/pid.h. */
const TASK_STATES: Record<number, TaskStateName> = {
  0x01: 'alive',
  0x02: 'dead',
  0x03: 'stopped',
  0x06: 'zombie',
  0x80: 'helper',
  0x81: 'thread',
};

/** CRIU prints its version and uname first; the rest of a log can be megabytes of detail. */
export const DUMP_LOG_SCAN_BYTES = 64 * 1024;

/** Checks an image's magic numbers and splits the rest into its protobuf entries. */
export function readImageEntries(buf: Buffer, subject: string, kind: ImageKind): Buffer[] {
  const magics = IMAGE_MAGICS[kind];
  if (buf.length < magics.length * 4) throw invalid(subject, `too short for a CRIU ${kind} image`);
  magics.forEach((expected, i) => {
    const magic = buf.readUInt32LE(i * 4);
    if (magic !== expected) {
      throw invalid(subject, `not a CRIU ${kind} image: magic ${hex(magic)} where ${hex(expected)} was expected`);
    }
  });
  const entries: Buffer[] = [];
  let pos = magics.length * 4;
  while (pos < buf.length) {
    if (buf.length - pos < 4) throw invalid(subject, `truncated entry length at offset ${pos}`);
    const size = buf.readUInt32LE(pos);
    if (size > buf.length - pos - 4) {
      throw invalid(subject, `entry of ${size} bytes at offset ${pos} runs past the end of the file`);
    }
    entries.push(buf.subarray(pos + 4, pos + 4 + size));
    pos += 4 + size;
  }
  return entries;
}

export function decodeInventory(buf: Buffer, subject: string): Inventory {
  const r = onlyEntry(buf, subject, 'inventory');
  const inv: Partial<Inventory> = {};
  forEachField(r, {
    1: (f) => (inv.imgVersion = r.u32(f)),
    2: (f) => (inv.fdinfoPerId = r.bool(f)),
    3: () => (inv.hasRootIds = true),
    4: (f) => (inv.nsPerId = r.bool(f)),
    5: (f) => (inv.rootCgSet = r.u32(f)),
    6: (f) => (inv.lsmtype = r.u32(f)),
    8: (f) => (inv.dumpUptime = r.u64(f)),
    9: (f) => (inv.preDumpMode = r.u32(f)),
    10: (f) => (inv.tcpClose = r.bool(f)),
    11: (f) => (inv.networkLockMethod = r.u32(f)),
    12: (f) => (inv.plugins = decodePlugins(r.message(f))),
    13: (f) => (inv.dumpCriuRunId = r.string(f)),
  });
  return { ...inv, imgVersion: required(inv.imgVersion, 'img_version', r), hasRootIds: inv.hasRootIds ?? false };
}

/** The processes in the order CRIU wrote them: the root task first, each parent before its children. */
export function decodePstree(buf: Buffer, subject: string): PstreeEntry[] {
  const entries = readImageEntries(buf, subject, 'pstree');
  if (entries.length === 0) throw invalid(subject, 'lists no processes');
  return entries.map((entry) => decodePstreeEntry(new WireReader(entry, subject)));
}

export function decodeCore(buf: Buffer, subject: string): Core {
  const r = onlyEntry(buf, subject, 'core');
  const core: { mtype?: number; task?: TaskCore; threadComm?: string } = {};
  forEachField(r, {
    1: (f) => (core.mtype = r.u32(f)),
    3: (f) => (core.task = decodeTaskCore(r.message(f))),
    5: (f) => (core.threadComm = decodeThreadComm(r.message(f))),
  });
  const mtype = required(core.mtype, 'mtype', r);
  const { task } = core;
  return {
    mtype,
    architecture: MARCH_GOARCH[mtype],
    comm: task?.comm ?? core.threadComm,
    taskState: task?.taskState,
    taskStateName: task && TASK_STATES[task.taskState],
    exitCode: task?.exitCode,
  };
}

/** The statistics of `criu dump` (stats-dump); a restore's stats-restore is refused. */
export function decodeStats(buf: Buffer, subject: string): DumpStats {
  const r = onlyEntry(buf, subject, 'stats');
  const stats: { dump?: WireReader } = {};
  forEachField(r, { 1: (f) => (stats.dump = r.message(f)) });
  if (!stats.dump) throw r.fail('holds no dump statistics');
  return decodeDumpStats(stats.dump);
}

/** `4.1.1` to 40101 (major * 10000 + minor * 100 + sublevel), the integer go-criu's GetCriuVersion gives. */
export function parseCriuVersion(version: string): number {
  const m = /^(\d{1,5})\.(\d{1,2})(?:\.(\d{1,2}))?$/.exec(version);
  if (!m) throw new CkptError('INVALID_METADATA', `${JSON.stringify(version)} is not a CRIU version`);
  return Number(m[1]) * 10000 + Number(m[2]) * 100 + Number(m[3] ?? 0);
}

/** 40101 to `4.1.1`; a zero sublevel is left out (`4.1`), as CRIU names its releases. */
export function formatCriuVersion(version: number): string {
  if (!Number.isSafeInteger(version) || version < 0) {
    throw new CkptError('INVALID_METADATA', `${version} is not a CRIU version number`);
  }
  const [major, minor, sublevel] = [Math.floor(version / 10000), Math.floor(version / 100) % 100, version % 100];
  return sublevel ? `${major}.${minor}.${sublevel}` : `${major}.${minor}`;
}

/**
 * The CRIU version and host that a dump.log names. Only its first DUMP_LOG_SCAN_BYTES are looked
 * at (characters, for a string): CRIU prints these lines first, so callers may read just that much
 * of a long log. At CRIU's default verbosity (-v2: errors and warnings only) neither line is
 * written and the result is empty; runc, which the engines drive, runs CRIU at -v4.
 */
export function parseDumpLog(log: string | Buffer): DumpLogInfo {
  const head =
    typeof log === 'string' ? log.slice(0, DUMP_LOG_SCAN_BYTES) : log.subarray(0, DUMP_LOG_SCAN_BYTES).toString();
  // Lines start `(ss.micros) `, and with --log-pid also `<pid>: `.
  const prefix = String.raw`^\(\s*[\d.]+\)\s+(?:\d+:\s+)?`;
  const info: DumpLogInfo = {};
  const version = new RegExp(`${prefix}Version:\\s+(\\S+)`, 'm').exec(head)?.[1];
  if (version) info.criuVersion = version;
  // `Running on <nodename> <sysname> <release> <version> <machine>`; the kernel's version has spaces.
  const uname = new RegExp(`${prefix}Running on\\s+(.+)$`, 'm').exec(head)?.[1]?.trim().split(/\s+/);
  if (uname && uname.length >= 4) {
    info.hostname = uname[0];
    info.kernel = uname[2];
    info.arch = uname.at(-1);
  }
  return info;
}

interface TaskCore {
  taskState: number;
  exitCode: number;
  comm: string;
}

/** task_core_entry (core.proto): present for thread-group leaders. */
function decodeTaskCore(r: WireReader): TaskCore {
  const tc: Partial<TaskCore> = {};
  forEachField(r, {
    1: (f) => (tc.taskState = r.u32(f)),
    2: (f) => (tc.exitCode = r.u32(f)),
    6: (f) => (tc.comm = r.string(f)),
  });
  return {
    taskState: required(tc.taskState, 'tc.task_state', r),
    exitCode: required(tc.exitCode, 'tc.exit_code', r),
    comm: required(tc.comm, 'tc.comm', r),
  };
}

/** thread_core_entry.comm: a thread's own name, the only one a non-leader thread's image has. */
function decodeThreadComm(r: WireReader): string | undefined {
  const thread: { comm?: string } = {};
  forEachField(r, { 13: (f) => (thread.comm = r.string(f)) });
  return thread.comm;
}

function decodePstreeEntry(r: WireReader): PstreeEntry {
  const e: Partial<PstreeEntry> = {};
  const threads: number[] = [];
  forEachField(r, {
    1: (f) => (e.pid = r.u32(f)),
    2: (f) => (e.ppid = r.u32(f)),
    3: (f) => (e.pgid = r.u32(f)),
    4: (f) => (e.sid = r.u32(f)),
    5: (f) => threads.push(...r.u32s(f)),
  });
  return {
    pid: required(e.pid, 'pid', r),
    ppid: required(e.ppid, 'ppid', r),
    pgid: required(e.pgid, 'pgid', r),
    sid: required(e.sid, 'sid', r),
    threads,
  };
}

/** dump_stats_entry (stats.proto). */
function decodeDumpStats(r: WireReader): DumpStats {
  const s: Partial<DumpStats> = {};
  forEachField(r, {
    1: (f) => (s.freezingTime = r.u32(f)),
    2: (f) => (s.frozenTime = r.u32(f)),
    3: (f) => (s.memdumpTime = r.u32(f)),
    4: (f) => (s.memwriteTime = r.u32(f)),
    5: (f) => (s.pagesScanned = r.u64(f)),
    6: (f) => (s.pagesSkippedParent = r.u64(f)),
    7: (f) => (s.pagesWritten = r.u64(f)),
    8: (f) => (s.irmapResolve = r.u32(f)),
    9: (f) => (s.pagesLazy = r.u64(f)),
    10: (f) => (s.pagePipes = r.u64(f)),
    11: (f) => (s.pagePipeBufs = r.u64(f)),
    12: (f) => (s.shpagesScanned = r.u64(f)),
    13: (f) => (s.shpagesSkippedParent = r.u64(f)),
    14: (f) => (s.shpagesWritten = r.u64(f)),
  });
  return {
    ...s,
    freezingTime: required(s.freezingTime, 'freezing_time', r),
    frozenTime: required(s.frozenTime, 'frozen_time', r),
    memdumpTime: required(s.memdumpTime, 'memdump_time', r),
    memwriteTime: required(s.memwriteTime, 'memwrite_time', r),
    pagesScanned: required(s.pagesScanned, 'pages_scanned', r),
    pagesSkippedParent: required(s.pagesSkippedParent, 'pages_skipped_parent', r),
    pagesWritten: required(s.pagesWritten, 'pages_written', r),
    pagesLazy: required(s.pagesLazy, 'pages_lazy', r),
  };
}

/** inventory's plugins_entry, whose repeated string is (oddly) field 12 too. */
function decodePlugins(r: WireReader): string[] {
  const names: string[] = [];
  forEachField(r, { 12: (f) => names.push(r.string(f)) });
  return names;
}

/** The one entry of an image that holds a single message (inventory, core, stats). */
function onlyEntry(buf: Buffer, subject: string, kind: ImageKind): WireReader {
  const [entry, ...extra] = readImageEntries(buf, subject, kind);
  if (!entry || extra.length > 0) {
    throw invalid(subject, `holds ${extra.length + (entry ? 1 : 0)} entries where a CRIU ${kind} image has one`);
  }
  return new WireReader(entry, subject);
}

/** Hands each known field to its handler; unknown fields (newer CRIU, other architectures) are skipped. */
function forEachField(r: WireReader, handlers: Record<number, (f: WireField) => void>): void {
  for (const f of r.fields()) handlers[f.field]?.(f);
}

/** proto2 `required`: protobuf-c, and so CRIU, refuses a message without it. */
function required<T>(value: T | undefined, name: string, r: WireReader): T {
  if (value === undefined) throw r.fail(`required field ${name} is missing`);
  return value;
}

function invalid(subject: string, message: string): CkptError {
  return new CkptError('INVALID_METADATA', message, { subject });
}

function hex(n: number): string {
  return `0x${n.toString(16).padStart(8, '0')}`;
}
