import { readFile, stat } from 'node:fs/promises';
import { arch, hostname, release } from 'node:os';
import { execa } from 'execa';
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

/** The first line a program prints for `--version`, or undefined when it is not installed. */
async function versionOf(program: string, signal?: AbortSignal): Promise<string | undefined> {
  try {
    const { stdout, exitCode } = await execa(program, ['--version'], { reject: false, timeout: 5000, cancelSignal: signal });
    return exitCode === 0 ? stdout.split('\n')[0]?.trim() || undefined : undefined;
  } catch {
    return undefined;
  }
}

/** `criu --version` prints "Version: 4.1.1"; keep the number. */
async function criuVersion(signal?: AbortSignal): Promise<string | undefined> {
  const line = await versionOf('criu', signal);
  return line?.match(/(\d+\.\d+(?:\.\d+)?)/)?.[1];
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

/**
 * Facts about this node that a restore cares about: recorded when `build` runs where the
 * checkpoint was made. Programs that are not installed are simply left out.
 */
export async function collectHostInfo(engine: Engine, runtime: string | undefined, signal?: AbortSignal): Promise<HostInfo> {
  const engineProgram = ENGINE_PROGRAM[engine];
  // containerd names its runtime after the shim (io.containerd.runc.v2); the binary is runc.
  const runtimeProgram = runtime?.match(/runc|crun|youki|runsc|kata/)?.[0];
  const [criu, cgroup, dist, engineVersion, runtimeVersion, conmonVersion] = await Promise.all([
    criuVersion(signal),
    cgroupVersion(),
    distribution(),
    engineProgram ? versionOf(engineProgram, signal) : undefined,
    runtimeProgram ? versionOf(runtimeProgram, signal) : undefined,
    engine === 'podman' ? versionOf('conmon', signal) : undefined,
  ]);
  return {
    criuVersion: criu,
    kernel: release(),
    architecture: goArch(arch()),
    cgroupVersion: cgroup,
    distribution: dist,
    hostname: hostname(),
    engineVersion: engineVersion?.match(/(\d+\.\d+\.\d+\S*)/)?.[1] ?? engineVersion,
    runtimeVersion,
    conmonVersion,
  };
}
