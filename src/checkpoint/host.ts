import { constants, type BigIntStats } from 'node:fs';
import { access, readFile, stat } from 'node:fs/promises';
import { arch, hostname, release } from 'node:os';
import { join } from 'node:path';
import type { Engine, HostInfo } from './schemas.js';

/** Node's and the kernel's machine names, as OCI (Go) architecture names. */
const GO_ARCH: Record<string, string> = {
  x64: 'amd64',
  x86_64: 'amd64',
  arm64: 'arm64',
  aarch64: 'arm64',
  arm: 'arm',
  armv7l: 'arm',
  ppc64: 'ppc64le',
  ppc64le: 'ppc64le',
  s390x: 's390x',
  mips64: 'mips64le',
  loong64: 'loong64',
  loongarch64: 'loong64',
  riscv64: 'riscv64',
};

export function goArch(machine: string): string {
  return GO_ARCH[machine] ?? machine;
}

/** What `program --version` printed first; `failed` when it is installed but gave no answer. */
interface Version {
  line?: string;
  failed: boolean;
}

const NOT_ASKED: Version = { failed: false };

/**
 * Runs only a program found on the PATH: Node sends the kill of a child that failed to spawn to
 * pid 0, the caller's whole process group (its shell, its CI job), and a build that fails while
 * these run kills them. Not installed is a fact about the node; timed out or failed is not.
 */
async function versionOf(program: string, signal?: AbortSignal): Promise<Version> {
  const found = await findProgram(program);
  if (!found) return { failed: false };
  try {
    // Loaded here: a re-push that finds its host facts unchanged never pays for it.
    const { execa } = await import('execa');
    // cleanup: ckpt's own signal handlers end these; execa's would raise the signal again.
    const result = await execa(found.path, ['--version'], { reject: false, timeout: 5000, cancelSignal: signal, cleanup: false });
    if (result.exitCode === 0) return { line: result.stdout.split('\n')[0]?.trim() || undefined, failed: false };
    return { failed: true };
  } catch {
    return { failed: true };
  }
}

async function cgroupVersion(): Promise<'v1' | 'v2' | undefined> {
  try {
    // Only a pure cgroup2 mount has cgroup.controllers at the root; hybrid hosts count as v1.
    await stat('/sys/fs/cgroup/cgroup.controllers');
    return 'v2';
  } catch {
    try {
      await stat('/sys/fs/cgroup');
      return 'v1';
    } catch {
      return undefined;
    }
  }
}

async function distribution(): Promise<{ name?: string; version?: string } | undefined> {
  let text: string;
  try {
    text = await readFile('/etc/os-release', 'utf8');
  } catch {
    return undefined;
  }
  const field = (key: string) => text.match(new RegExp(`^${key}="?([^"\\n]*)"?$`, 'm'))?.[1];
  return { name: field('ID'), version: field('VERSION_ID') };
}

const ENGINE_PROGRAM: Record<Engine, string | undefined> = {
  podman: 'podman',
  'cri-o': 'crio',
  containerd: 'containerd',
  criu: undefined,
};

/** The programs whose versions describe this node for a checkpoint of `engine` run by `runtime`. */
function programsFor(engine: Engine, runtime: string | undefined) {
  return {
    engine: ENGINE_PROGRAM[engine],
    // containerd names its runtime after the shim (io.containerd.runc.v2); the binary is runc.
    runtime: runtime?.match(/runc|crun|youki|runsc|kata/)?.[0],
    conmon: engine === 'podman' ? 'conmon' : undefined,
  };
}

/** The file a program's name means on the PATH, as a shell would run it. */
async function findProgram(program: string): Promise<{ path: string; info: BigIntStats } | undefined> {
  for (const dir of (process.env.PATH ?? '').split(':').filter(Boolean)) {
    const path = join(dir, program);
    try {
      const info = await stat(path, { bigint: true });
      if (info.isFile()) {
        await access(path, constants.X_OK);
        return { path, info };
      }
    } catch {
      // Not in this directory, or not runnable here.
    }
  }
  return undefined;
}

/** Where a program is on the PATH and which build of it this is, without running it. */
async function programIdentity(program: string): Promise<string> {
  const found = await findProgram(program);
  return found ? `${found.path} ${found.info.ino} ${found.info.size} ${found.info.mtimeNs}` : `${program} missing`;
}

/**
 * Changes whenever collectHostInfo could report something else (a program upgraded, another
 * kernel), yet runs nothing: it lets a re-push of a cached build skip asking every program.
 */
export async function hostFingerprint(engine: Engine, runtime: string | undefined): Promise<string> {
  const { engine: engineProgram, runtime: runtimeProgram, conmon } = programsFor(engine, runtime);
  const programs = ['criu', engineProgram, runtimeProgram, conmon].filter((p): p is string => p !== undefined);
  const osRelease = await stat('/etc/os-release', { bigint: true }).then(
    (info) => `${info.ino} ${info.mtimeNs}`,
    () => 'none',
  );
  return JSON.stringify([hostname(), release(), arch(), osRelease, await cgroupVersion(), ...(await Promise.all(programs.map(programIdentity)))]);
}

/** This node's facts, and whether every installed program answered: only then may they be reused. */
export interface HostFacts {
  host: HostInfo;
  complete: boolean;
}

/**
 * Facts about this node that a restore cares about: recorded when `build` runs where the
 * checkpoint was made. Programs that are not installed are simply left out.
 */
export async function collectHostInfo(engine: Engine, runtime: string | undefined, signal?: AbortSignal): Promise<HostFacts> {
  const { engine: engineProgram, runtime: runtimeProgram, conmon } = programsFor(engine, runtime);
  const [criu, cgroup, dist, engineVersion, runtimeVersion, conmonVersion] = await Promise.all([
    versionOf('criu', signal),
    cgroupVersion(),
    distribution(),
    engineProgram ? versionOf(engineProgram, signal) : NOT_ASKED,
    runtimeProgram ? versionOf(runtimeProgram, signal) : NOT_ASKED,
    conmon ? versionOf(conmon, signal) : NOT_ASKED,
  ]);
  const host = {
    // `criu --version` prints "Version: 4.1.1"; keep the number.
    criuVersion: criu.line?.match(/(\d+\.\d+(?:\.\d+)?)/)?.[1],
    kernel: release(),
    architecture: goArch(arch()),
    cgroupVersion: cgroup,
    distribution: dist,
    hostname: hostname(),
    engineVersion: engineVersion.line?.match(/(\d+\.\d+\.\d+\S*)/)?.[1] ?? engineVersion.line,
    runtimeVersion: runtimeVersion.line,
    conmonVersion: conmonVersion.line,
  };
  return { host, complete: ![criu, engineVersion, runtimeVersion, conmonVersion].some((v) => v.failed) };
}
