import { type Command, Option } from 'commander';
import { CkptAnnotation } from '../image/annotations.js';
import type { Descriptor } from '../oci/schemas.js';
import { bytes } from './format.js';
import { progressReporter, type ProgressReporter } from './progress.js';

export interface OutputFlags {
  json?: boolean;
  quiet?: boolean;
  progress?: boolean;
}

export function addOutputFlags(command: Command): Command {
  return command
    .addOption(new Option('--json', 'print the result as JSON').conflicts('quiet'))
    .option('-q, --quiet', 'print only the digest')
    .option('--progress', 'show progress even when stderr is not a terminal');
}

/** Progress is drawn on a terminal, or when asked for; never with -q or --json unless asked. */
export function progressFor(verb: string, flags: OutputFlags): ProgressReporter {
  const wanted = flags.progress ?? (process.stderr.isTTY === true && !flags.quiet && !flags.json);
  return progressReporter(verb, wanted);
}

/** Data on stdout: the JSON result, the digest alone, or one human line. */
export function printResult(flags: OutputFlags, json: unknown, digest: string, human: string): void {
  if (flags.json) process.stdout.write(`${JSON.stringify(json, null, 2)}\n`);
  else if (flags.quiet) process.stdout.write(`${digest}\n`);
  else process.stdout.write(`${human}\n`);
}

/** What build and push print of the image they wrote: the same fields for both. */
export function printImage(
  flags: OutputFlags,
  image: { reference: string; descriptor: Descriptor; manifest: Descriptor; layers: Descriptor[] },
  extra: Record<string, unknown> = {},
): void {
  const { reference, descriptor, manifest } = image;
  const layers = image.layers.map(({ annotations, ...desc }) => ({ role: annotations?.[CkptAnnotation.layer], ...desc }));
  const size = layers.reduce((sum, l) => sum + l.size, 0);
  const json = { reference, digest: descriptor.digest, mediaType: descriptor.mediaType, manifest: manifest.digest, ...extra, layers, size };
  printResult(flags, json, descriptor.digest, `${reference} ${descriptor.digest} (${layers.length} layers, ${bytes(size)})`);
}
