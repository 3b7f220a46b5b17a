import type { Command } from 'commander';
import { countOption } from '../options.js';
import { addOutputFlags, printImage, progressFor } from '../output.js';
import { addRegistryFlags } from '../registry-flags.js';
import { type BuildFlags, addImageFlags, buildOptions } from './build.js';

export function registerPush(cli: Command, signal: AbortSignal): void {
  const command = cli
    .command('push')
    .description('Push a checkpoint to a registry: archives and directories are built on the way, checkpoint images copied as they are')
    .argument('<source>', 'checkpoint archive, checkpoint or criu dump directory, or checkpoint image (oci:DIR:TAG, registry)')
    .argument('<destination>', 'HOST[:PORT]/REPO[:TAG] (or oci:DIR[:TAG])')
    .option('--concurrency <n>', 'blobs moved at once (default 4)', countOption);
  addOutputFlags(addRegistryFlags(addImageFlags(command))).action(async (source: string, destination: string, flags: BuildFlags) => {
    const { push } = await import('../../commands/push.js');
    const progress = progressFor('Pushing', flags);
    // Flags with defaults count only where given: a checkpoint image is copied as it is, and push
    // refuses image-making flags it would have to ignore.
    const given = <K extends keyof BuildFlags>(name: K): BuildFlags[K] | undefined =>
      command.getOptionValueSource(name) === 'cli' ? flags[name] : undefined;
    const options = { ...(await buildOptions(flags, signal)), compression: given('compression'), compat: given('compat'), hostInfo: given('hostInfo') };
    const result = await push(source, destination, { ...options, onProgress: progress.onProgress }).finally(progress.finish);
    printImage(flags, result, { built: result.built });
  });
}
