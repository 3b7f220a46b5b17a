import type { Command } from 'commander';
import { countOption } from '../options.js';
import { type OutputFlags, addOutputFlags, printResult, progressFor } from '../output.js';
import { type RegistryFlags, addRegistryFlags, registryAccess } from '../registry-flags.js';

interface CopyFlags extends OutputFlags, RegistryFlags {
  srcCreds?: string;
  concurrency?: number;
}

export function registerCopy(cli: Command, signal: AbortSignal): void {
  const command = cli
    .command('copy')
    .description('Copy an image between registries and layouts, keeping its digests (blobs mounted where the registry can)')
    .argument('<source>', 'HOST[:PORT]/REPO[:TAG|@DIGEST] or oci:DIR[:TAG]')
    .argument('<destination>', 'HOST[:PORT]/REPO[:TAG] or oci:DIR[:TAG] (tag defaults to the source tag)')
    .option(
      '--src-creds <user[:password]>',
      'credentials for the source registry (the other registry flags apply to both; --creds go to the source only on the same registry or with a layout as destination)',
    )
    .option('--concurrency <n>', 'blobs moved at once (default 4)', countOption);
  addOutputFlags(addRegistryFlags(command)).action(async (source: string, destination: string, flags: CopyFlags) => {
    const { copy } = await import('../../commands/copy.js');
    const access = await registryAccess(flags, signal);
    const sourceAccess = flags.srcCreds ? await registryAccess({ ...flags, creds: flags.srcCreds, username: undefined, passwordStdin: undefined }, signal, 'Password of the source: ') : undefined;
    const progress = progressFor('Copying', flags);
    const result = await copy(source, destination, {
      ...access,
      source: sourceAccess,
      concurrency: flags.concurrency,
      signal,
      onProgress: progress.onProgress,
    }).finally(progress.finish);
    printResult(flags, result, result.descriptor.digest, `${result.reference} ${result.descriptor.digest}`);
  });
}
