import { CkptError } from '../errors.js';
import { parseJson } from '../oci/schemas.js';
import { decodeCore, decodeInventory, decodePstree, decodeStats, parseDumpLog } from './criu/images.js';
import { goArch } from './host.js';
import type { ScanResult } from './scan.js';
import {
  BindMountsSchema,
  type CheckpointMetadata,
  type ConfigDump,
  ConfigDumpSchema,
  DeletedFilesSchema,
  type Engine,
  type SpecDump,
  SpecDumpSchema,
} from './schemas.js';

/** The runtimes that can restore a checkpoint made by each engine (FORMATS.md section 2). */
const RESTORABLE_BY: Record<Engine, string[]> = {
  podman: ['podman'],
  'cri-o': ['cri-o'],
  containerd: ['containerd'],
  criu: ['criu'],
};

function engineOf(spec: SpecDump | undefined): Engine {
  const manager = spec?.annotations?.['io.container.manager'];
  if (manager === 'libpod') return 'podman';
  if (manager === 'cri-o') return 'cri-o';
  return 'containerd';
}

interface ContainerDumps {
  config: ConfigDump | undefined;
  spec: SpecDump | undefined;
  engine: Engine;
  runtime: string | undefined;
}

/** What the bytes of each config.dump read gave, with the spec.dump parsed beside it. */
const parsedDumps = new WeakMap<Buffer, { specBytes: Buffer | undefined; dumps: ContainerDumps }>();

/**
 * config.dump and spec.dump parsed, with the engine and OCI runtime they name: all known as soon
 * as these two files are read, while the rest of a checkpoint is still being read. A build asks
 * that early and again once the scan ends; the same files are parsed once.
 */
export function containerDumps(configBytes: Buffer | undefined, specBytes: Buffer | undefined, subject: string): ContainerDumps {
  const known = configBytes && parsedDumps.get(configBytes);
  if (known && known.specBytes === specBytes) return known.dumps;
  const config = configBytes ? parseJson(ConfigDumpSchema, configBytes, `${subject}: config.dump`, 'INVALID_METADATA') : undefined;
  const spec = specBytes ? parseJson(SpecDumpSchema, specBytes, `${subject}: spec.dump`, 'INVALID_METADATA') : undefined;
  const engine: Engine = config && spec ? engineOf(spec) : 'criu';
  const dumps = { config, spec, engine, runtime: str(config?.runtime) };
  if (configBytes) parsedDumps.set(configBytes, { specBytes, dumps });
  return dumps;
}

function jsonAnnotation(value: string | undefined): Record<string, unknown> | undefined {
  if (!value) return undefined;
  try {
    const parsed: unknown = JSON.parse(value);
    return typeof parsed === 'object' && parsed !== null ? (parsed as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function str(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/** Container, pod and image identity, each engine keeping them in its own places. */
function identity(engine: Engine, config: ConfigDump, spec: SpecDump) {
  const a = spec.annotations ?? {};
  const image = {
    name: str(config.rootfsImageName),
    id: str(config.rootfsImageID),
    reference: str(config.rootfsImageRef),
    requested: str(config.rootfsImage) ?? str(config.RawImageName),
  };
  switch (engine) {
    case 'podman':
      return {
        container: { id: str(config.id), name: str(config.name) },
        pod: config.pod ? { id: config.pod } : undefined,
        image,
      };
    case 'cri-o': {
      const meta = jsonAnnotation(a['io.kubernetes.cri-o.Metadata']);
      return {
        container: { id: str(config.id), name: str(meta?.name) ?? str(a['io.kubernetes.container.name']) ?? str(config.name) },
        pod: {
          name: str(a['io.kubernetes.pod.name']),
          namespace: str(a['io.kubernetes.pod.namespace']),
          uid: str(a['io.kubernetes.pod.uid']),
          id: str(a['io.kubernetes.cri-o.SandboxID']),
        },
        // CRI-O records the base image's ID (no digest) as rootfsImageRef.
        image: { ...image, id: image.id ?? image.reference },
      };
    }
    default:
      return {
        container: { id: str(config.id), name: str(a['io.kubernetes.cri.container-name']) ?? str(config.name) },
        pod: {
          name: str(a['io.kubernetes.cri.sandbox-name']),
          namespace: str(a['io.kubernetes.cri.sandbox-namespace']),
          uid: str(a['io.kubernetes.cri.sandbox-uid']),
          id: str(a['io.kubernetes.cri.sandbox-id']),
        },
        image: { ...image, id: image.id ?? image.reference?.match(/@(sha256:[a-f0-9]{64})$/)?.[1] },
      };
  }
}

/** The object without its undefined fields; undefined when none is left. */
export function definedOnly<T extends object>(value: T | undefined): T | undefined {
  if (!value) return undefined;
  const kept = Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined));
  return Object.keys(kept).length > 0 ? (kept as T) : undefined;
}

/**
 * A file time to the second, as a tar keeps it: a raw dump read from its directory, from an
 * archive of it or from its image then says the same time, and gives the same digests.
 */
function wholeSeconds(time: Date | undefined): string | undefined {
  return time && new Date(Math.floor(time.getTime() / 1000) * 1000).toISOString();
}

/**
 * Turns what a scan found into the checkpoint's description. `subject` names the checkpoint in
 * errors: a tree without CRIU's inventory is not a checkpoint; broken metadata files are refused.
 */
export function interpretScan(scan: ScanResult, subject: string): CheckpointMetadata {
  const files = scan.files;
  const criuDir = files.has('checkpoint/inventory.img') ? 'checkpoint/' : files.has('inventory.img') ? '' : undefined;
  if (criuDir === undefined) {
    throw new CkptError('NOT_CHECKPOINT', 'not a checkpoint: no CRIU inventory.img (neither at the top nor in checkpoint/)', {
      subject,
    });
  }
  const read = (name: string) => files.get(name);
  const at = (name: string) => `${subject}: ${name}`;
  const dumpPages = scan.pages.filter((p) => !p.path.startsWith('pre-checkpoint/'));
  const configBytes = read('config.dump');
  const specBytes = read('spec.dump');
  if (criuDir === 'checkpoint/' && (!configBytes || !specBytes)) {
    throw new CkptError('NOT_CHECKPOINT', `container checkpoint without ${configBytes ? 'spec.dump' : 'config.dump'}`, { subject });
  }
  const { config, spec, engine, runtime } = containerDumps(configBytes, specBytes, subject);
  const who = config && spec ? identity(engine, config, spec) : { container: {}, pod: undefined, image: {} };

  const inventory = decodeInventory(read(`${criuDir}inventory.img`) as Buffer, at(`${criuDir}inventory.img`));
  const pstreeBytes = read(`${criuDir}pstree.img`);
  const pstree = pstreeBytes ? decodePstree(pstreeBytes, at(`${criuDir}pstree.img`)) : [];
  const cores = new Map(
    pstree.map((p) => {
      const bytes = read(`${criuDir}core-${p.pid}.img`);
      return [p.pid, bytes ? decodeCore(bytes, at(`${criuDir}core-${p.pid}.img`)) : undefined] as const;
    }),
  );
  const statsBytes = read('stats-dump');
  const log = read('dump.log');
  const logInfo = log ? parseDumpLog(log) : {};
  const deleted = read('deleted.files');
  const bindMounts = read('bind.mounts');

  const rootCore = pstree[0] ? cores.get(pstree[0].pid) : undefined;
  return {
    engine,
    criuDir,
    container: definedOnly(who.container) ?? {},
    pod: definedOnly(who.pod),
    image: definedOnly(who.image) ?? {},
    runtime,
    command: spec?.process?.args,
    created: str(config?.createdTime),
    checkpointed: str(config?.checkpointedTime) ?? wholeSeconds(scan.inventoryTime),
    architecture: rootCore?.architecture ?? (logInfo.arch ? goArch(logInfo.arch) : undefined),
    criu: definedOnly({ version: logInfo.criuVersion, imageVersion: inventory.imgVersion, runId: inventory.dumpCriuRunId }) ?? {},
    dumpHost: definedOnly({
      criuVersion: logInfo.criuVersion,
      kernel: logInfo.kernel,
      architecture: logInfo.arch ? goArch(logInfo.arch) : undefined,
      hostname: logInfo.hostname,
    }),
    processes: pstree.map((p) => ({
      pid: p.pid,
      ppid: p.ppid,
      pgid: p.pgid,
      sid: p.sid,
      threads: Math.max(1, p.threads.length),
      command: cores.get(p.pid)?.comm,
    })),
    memory: {
      bytes: dumpPages.reduce((sum, p) => sum + p.size, 0),
      files: dumpPages.length,
    },
    rootfsDiff: scan.rootfsDiff,
    deletedFiles: deleted ? parseJson(DeletedFilesSchema, deleted, at('deleted.files'), 'INVALID_METADATA') : [],
    bindMounts: bindMounts ? parseJson(BindMountsSchema, bindMounts, at('bind.mounts'), 'INVALID_METADATA').map((m) => m.destination) : undefined,
    stats: statsBytes ? decodeStats(statsBytes, at('stats-dump')) : undefined,
    files: { count: scan.count, bytes: scan.bytes },
    restorableBy: RESTORABLE_BY[engine],
  };
}
