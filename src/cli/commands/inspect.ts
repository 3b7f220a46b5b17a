import type { Command } from 'commander';
import { inspectSummary, processTree } from '../inspect-view.js';

interface InspectFlags {
  json?: boolean;
  tree?: boolean;
}

export function registerInspect(cli: Command, signal: AbortSignal): void {
  cli
    .command('inspect')
    .description('Show what a checkpoint holds: container, pod, image, engine, CRIU, processes, memory, file-system diff')
    .argument('<source>', 'checkpoint archive, directory, raw CRIU dump, or checkpoint image (oci:DIR:TAG)')
    .option('--json', 'print everything as JSON (schema: schemas/inspect.schema.json)')
    .option('--tree', 'show the process tree')
    .action(async (source: string, flags: InspectFlags) => {
      const { inspect } = await import('../../commands/inspect.js');
      const result = await inspect(source, { signal });
      if (flags.json) {
        process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
        return;
      }
      process.stdout.write(`${inspectSummary(result)}\n`);
      if (flags.tree) process.stdout.write(`\nProcess tree:\n${processTree(result.metadata.processes)}\n`);
    });
}
