import type { Command } from 'commander';
import { bytes } from '../format.js';
import { annotationOption, compatOption, compressionOption, integerOption, sizeOption } from '../options.js';

interface BuildFlags {
  compression: 'zstd' | 'gzip' | 'none';
  level?: number;
  compat: 'auto' | 'crio' | 'podman' | 'containerd' | 'all';
  annotation?: Record<string, string>;
  hostInfo: boolean;
  maxLayerSize?: number;
  json?: boolean;
  quiet?: boolean;
}

export function registerBuild(cli: Command, signal: AbortSignal): void {
  cli
    .command('build')
    .description('Build a checkpoint image from a checkpoint archive, directory, raw CRIU dump or checkpoint image')
    .argument('<source>', 'checkpoint .tar/.tar.gz/.tar.zst, checkpoint or criu dump directory, or oci:DIR:TAG')
    .argument('<destination>', 'oci:DIR[:TAG] (tag defaults to latest)')
    .option('--compression <kind>', 'layer compression: zstd, gzip or none', compressionOption, 'zstd')
    .option('--level <n>', 'compression level (zstd 1-19, default 3; gzip 1-9, default 6)', integerOption)
    .option('--compat <runtimes>', 'annotation families: auto (the checkpoint\'s engine), crio, podman, containerd or all', compatOption, 'auto')
    .option('--annotation <key=value>', 'add a manifest annotation (repeatable)', annotationOption)
    .option('--no-host-info', 'do not record this node\'s CRIU, kernel, cgroup and distribution versions')
    .option('--max-layer-size <size>', 'upper bound of a memory-pages layer (default 256MiB)', sizeOption)
    .option('--json', 'print the result as JSON')
    .option('-q, --quiet', 'print only the digest')
    .action(async (source: string, destination: string, flags: BuildFlags) => {
      const { build } = await import('../../commands/build.js');
      const result = await build(source, destination, {
        compression: flags.compression,
        level: flags.level,
        compat: flags.compat,
        annotations: flags.annotation,
        hostInfo: flags.hostInfo,
        maxLayerBytes: flags.maxLayerSize,
        signal,
      });
      const size = result.layers.reduce((sum, l) => sum + l.desc.size, 0);
      if (flags.json) {
        process.stdout.write(
          `${JSON.stringify(
            {
              reference: result.reference,
              digest: result.descriptor.digest,
              mediaType: result.descriptor.mediaType,
              manifest: result.manifest.digest,
              layers: result.layers.map((l) => ({ role: l.role, ...l.desc })),
              size,
            },
            null,
            2,
          )}\n`,
        );
      } else if (flags.quiet) {
        process.stdout.write(`${result.descriptor.digest}\n`);
      } else {
        process.stdout.write(
          `${result.reference} ${result.descriptor.digest} (${result.layers.length} layers, ${bytes(size)} ${flags.compression})\n`,
        );
      }
    });
}
