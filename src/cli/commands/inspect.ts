import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import type { Platform } from '../../oci/schemas.js';
import { bytes } from '../format.js';
import { inspectSummary, processTree } from '../inspect-view.js';
import { type RegistryFlags, addRegistryFlags, registryAccess } from '../registry-flags.js';

interface InspectFlags extends RegistryFlags {
  json?: boolean;
  tree?: boolean;
  verbose?: boolean;
  platform?: Platform;
}

export function platformOption(value: string): Platform {
  const parts = value.split('/');
  const [os, architecture, variant] = parts;
  if (!os || !architecture || parts.length > 3 || parts.includes('')) throw new InvalidArgumentError('expected OS/ARCH[/VARIANT], e.g. linux/arm64');
  return variant ? { os, architecture, variant } : { os, architecture };
}

export function registerInspect(cli: Command, signal: AbortSignal): void {
  const command = cli
    .command('inspect')
    .description('Show what a checkpoint holds: container, pod, image, engine, CRIU, processes, memory, file-system diff')
    .argument('<source>', 'checkpoint archive, directory, raw CRIU dump, or checkpoint image (oci:DIR:TAG, HOST/REPO:TAG)')
    .option('--json', 'print everything as JSON (schema: schemas/inspect.schema.json)')
    .option('--tree', 'show the process tree')
    .option('-v, --verbose', 'say how many bytes were fetched from an image')
    .option('--platform <os/arch>', 'platform to pick from an image index (default: this node)', platformOption);
  addRegistryFlags(command, true).action(async (source: string, flags: InspectFlags) => {
    const { inspect } = await import('../../commands/inspect.js');
    const result = await inspect(source, { ...(await registryAccess(flags, signal)), platform: flags.platform, signal });
    if (flags.json) {
      process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    } else {
      process.stdout.write(`${inspectSummary(result)}\n`);
      if (flags.tree) process.stdout.write(`\nProcess tree:\n${processTree(result.metadata.processes)}\n`);
    }
    if (flags.verbose && result.fetchedBytes !== undefined) {
      process.stderr.write(`Fetched ${bytes(result.fetchedBytes)} (${result.fetchedBytes} bytes) of ${bytes(result.image?.size ?? 0)} in layers\n`);
    }
  });
}
