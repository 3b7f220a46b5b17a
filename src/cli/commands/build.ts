import type { Command } from 'commander';
import type { Compat } from '../../image/annotations.js';
import type { Compression } from '../../compress/codec.js';
import { annotationOption, compatOption, compressionOption, integerOption, sizeOption } from '../options.js';
import { type OutputFlags, addOutputFlags, printImage, progressFor } from '../output.js';
import { type RegistryFlags, addRegistryFlags, registryAccess } from '../registry-flags.js';

export interface BuildFlags extends OutputFlags, RegistryFlags {
  compression: Compression;
  level?: number;
  compat: Compat;
  annotation?: Record<string, string>;
  hostInfo: boolean;
  maxLayerSize?: number;
  concurrency?: number;
  cache: boolean;
}

/** The image-making flags, shared by build and push. */
export function addImageFlags(command: Command): Command {
  return command
    .option('--compression <kind>', 'layer compression: zstd, gzip or none', compressionOption, 'zstd')
    .option('--level <n>', 'compression level (zstd 1-19, default 1; gzip 1-9, default 6)', integerOption)
    .option('--compat <runtimes>', "annotation families: auto (the checkpoint's engine), crio, podman, containerd or all", compatOption, 'auto')
    .option('--annotation <key=value>', 'add a manifest annotation (repeatable)', annotationOption)
    .option('--no-host-info', "do not record this node's CRIU, kernel, cgroup and distribution versions")
    .option('--max-layer-size <size>', 'upper bound of a memory-pages layer (default 256MiB)', sizeOption)
    .option(
      '--no-cache',
      'build every layer even when this checkpoint was built before (cache: $CKPT_CACHE_DIR, else $XDG_CACHE_HOME/ckpt/builds or ~/.cache/ckpt/builds)',
    );
}

export async function buildOptions(flags: BuildFlags, signal: AbortSignal) {
  const { BuildCache } = await import('../../image/cache.js');
  return {
    cache: flags.cache ? new BuildCache() : undefined,
    ...(await registryAccess(flags, signal)),
    compression: flags.compression,
    level: flags.level,
    compat: flags.compat,
    annotations: flags.annotation,
    hostInfo: flags.hostInfo,
    maxLayerBytes: flags.maxLayerSize,
    concurrency: flags.concurrency,
    signal,
  };
}

export function registerBuild(cli: Command, signal: AbortSignal): void {
  const command = cli
    .command('build')
    .description('Build a checkpoint image from a checkpoint archive, directory, raw CRIU dump or checkpoint image')
    .argument('<source>', 'checkpoint .tar/.tar.gz/.tar.zst, checkpoint or criu dump directory, oci:DIR:TAG or a registry image')
    .argument('<destination>', 'oci:DIR[:TAG] or HOST[:PORT]/REPO[:TAG] (tag defaults to latest)');
  addOutputFlags(addRegistryFlags(addImageFlags(command))).action(async (source: string, destination: string, flags: BuildFlags) => {
    const { build } = await import('../../commands/build.js');
    const progress = progressFor('Building', flags);
    const result = await build(source, destination, { ...(await buildOptions(flags, signal)), onProgress: progress.onProgress }).finally(
      progress.finish,
    );
    printImage(flags, { ...result, layers: result.manifestLayers });
  });
}
