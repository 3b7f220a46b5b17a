import type { Command } from 'commander';
import type { Platform } from '../../oci/schemas.js';
import { countOption } from '../options.js';
import { type OutputFlags, addOutputFlags, printResult, progressFor } from '../output.js';
import { type RegistryFlags, addRegistryFlags, registryAccess } from '../registry-flags.js';
import { platformOption } from './inspect.js';

interface PullFlags extends OutputFlags, RegistryFlags {
  concurrency?: number;
  platform?: Platform;
}

export function registerPull(cli: Command, signal: AbortSignal): void {
  const command = cli
    .command('pull')
    .description('Pull a checkpoint image and unpack it: to a directory, to a kubelet-style NAME.tar, or to oci:DIR[:TAG]')
    .argument('<source>', 'HOST[:PORT]/REPO[:TAG|@DIGEST] or oci:DIR[:TAG]')
    .argument('<destination>', 'a new directory (the checkpoint tree, mode 0700), NAME.tar (for CRI-O or podman restore --import), or oci:DIR[:TAG]')
    .option('--concurrency <n>', 'layers fetched at once (default 4)', countOption)
    .option('--platform <os/arch>', 'platform to pick from an image index (default: this node)', platformOption);
  addOutputFlags(addRegistryFlags(command, true)).action(async (source: string, destination: string, flags: PullFlags) => {
    const { pull } = await import('../../commands/pull.js');
    const progress = progressFor('Pulling', flags);
    const result = await pull(source, destination, {
      ...(await registryAccess(flags, signal)),
      concurrency: flags.concurrency,
      platform: flags.platform,
      signal,
      onProgress: progress.onProgress,
    }).finally(progress.finish);
    printResult(flags, result, result.descriptor.digest, `${result.destination} ${result.descriptor.digest} (${result.kind})`);
  });
}
