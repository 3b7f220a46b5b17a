import { z } from 'zod';
import { COMPRESSIONS, type Compression, compressionLevel } from '../compress/codec.js';
import { assertConcurrency } from '../content/limit.js';
import type { TransferOptions } from '../content/target.js';
import { CkptError } from '../errors.js';
import { COMPATS } from '../image/annotations.js';
import { BuildCache } from '../image/cache.js';
import { PlatformSchema } from '../oci/schemas.js';

const callback = z.custom<(...args: never[]) => unknown>((value) => typeof value === 'function', 'expected a function');

/** Upload chunks are held in memory, two per blob in flight. */
const MAX_CHUNK_SIZE = 1024 * 1024 * 1024;

/** How to reach a registry (RegistryAccess): a command's own, and copy's `source`. */
const AccessCheck = z.looseObject({
  chunkSize: z.number().int().min(1024, 'expected at least 1024 bytes').max(MAX_CHUNK_SIZE, 'expected at most 1 GiB').optional(),
  authFile: z.string().optional(),
  caFiles: z.array(z.string()).optional(),
  plainHttp: z.boolean().optional(),
  tlsVerify: z.boolean().optional(),
  credentials: z.looseObject({ username: z.string(), password: z.string() }).optional(),
  credentialsFor: z.string().optional(),
  retry: z
    .looseObject({
      attempts: z.number().int().min(1).optional(),
      minDelayMs: z.number().min(0).optional(),
      maxDelayMs: z.number().min(0).optional(),
      maxRetryAfterMs: z.number().min(0).optional(),
    })
    .optional(),
});

/** What every command takes. A JavaScript caller has no compiler to stop a wrong value: each is checked first. */
const CommandOptionsCheck = AccessCheck.extend({
  signal: z.instanceof(AbortSignal, { message: 'expected an AbortSignal' }).optional(),
  onProgress: callback.optional(),
  concurrency: z.number().optional(),
  platform: PlatformSchema.optional(),
  source: AccessCheck.optional(),
  // login and logout: the user's, and where the auth files are looked for.
  username: z.string().optional(),
  password: z.string().optional(),
  env: z.record(z.string(), z.string().optional()).optional(),
  home: z.string().optional(),
});

/** What a build takes besides (build, push). */
const BuildOptionsCheck = CommandOptionsCheck.extend({
  compression: z.enum(COMPRESSIONS).optional(),
  level: z.number().optional(),
  compat: z.enum(COMPATS).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
  hostInfo: z.boolean().optional(),
  maxLayerBytes: z.number().int().positive().optional(),
  cache: z.instanceof(BuildCache, { message: 'expected a BuildCache' }).optional(),
});

export type OptionsKind = 'command' | 'build';
const CHECKS: Record<OptionsKind, z.ZodType> = { command: CommandOptionsCheck, build: BuildOptionsCheck };

/** How runCommand checks a command's options: their values, and which names it takes. */
export interface OptionsSpec {
  kind: OptionsKind;
  names: ReadonlySet<string>;
  /** Options that are objects of options themselves (copy's `source`), with their names. */
  nested?: Record<string, ReadonlySet<string>>;
}

/**
 * The names of a command's options, listed where the compiler holds the list to the command's
 * options type (a list that misses a name, or names one written out in it that the type lacks, does
 * not compile): a name a JavaScript caller misspells (`authfile`) is refused, not ignored while
 * the command does something else.
 */
export function optionNames<O extends object>(names: { [K in keyof Required<O>]: true }): ReadonlySet<string> {
  return new Set(Object.keys(names));
}

function usage(message: string): CkptError {
  return new CkptError('USAGE', message);
}

/**
 * Runs a command of the public API with `inputs` (the references and paths it names, which must
 * be non-empty strings) and `options`, checked first. Whatever a caller's abort interrupts, and
 * whatever reason its signal carries (a timeout's, the caller's own error), the command fails with
 * ABORTED. A progress callback that throws stops the command, which fails with that error: thrown
 * from inside a stream's event, it would otherwise end the process.
 */
export async function runCommand<O extends object, T>(
  { kind, names, nested = {} }: OptionsSpec,
  inputs: Record<string, unknown>,
  options: O,
  body: (options: O) => Promise<T>,
): Promise<T> {
  for (const [name, value] of Object.entries(inputs)) {
    if (typeof value !== 'string' || value.trim() === '') throw usage(`${name} must be a non-empty string, not ${JSON.stringify(value) ?? String(value)}`);
  }
  if (typeof options !== 'object' || options === null) throw usage('options must be an object');
  const unknown = Object.keys(options).find((name) => !names.has(name));
  if (unknown !== undefined) throw usage(`unknown option ${JSON.stringify(unknown)}`);
  for (const [name, inner] of Object.entries(nested)) {
    const value: unknown = (options as Record<string, unknown>)[name];
    if (value === undefined) continue;
    if (typeof value !== 'object' || value === null) throw usage(`option ${name} must be an object`);
    const wrong = Object.keys(value).find((key) => !inner.has(key));
    if (wrong !== undefined) throw usage(`unknown option ${JSON.stringify(`${name}.${wrong}`)}`);
  }
  const checked = CHECKS[kind].safeParse(options);
  if (!checked.success) {
    const issue = checked.error.issues[0];
    throw usage(`option ${issue?.path.join('.') ?? '?'}: ${issue?.message ?? 'invalid'}`);
  }
  // Values whose bounds depend on each other, checked by the code that uses them, but now.
  const { concurrency, compression, level } = options as { concurrency?: number; compression?: Compression; level?: number };
  if (concurrency !== undefined) assertConcurrency(concurrency);
  if (kind === 'build') compressionLevel(compression ?? 'zstd', level);
  const { signal, onProgress }: TransferOptions = options;
  const subject = Object.values(inputs)[0] as string;
  const aborted = () => new CkptError('ABORTED', 'operation aborted', { subject, cause: signal?.reason });
  if (signal?.aborted) throw aborted();
  const callbackFailed = new AbortController();
  let thrown: { error: unknown } | undefined;
  /** An async callback's promises, waited for before the command counts as done. */
  const pending = new Set<Promise<unknown>>();
  const guarded = {
    ...options,
    signal: signal ? AbortSignal.any([signal, callbackFailed.signal]) : callbackFailed.signal,
    onProgress: onProgress
      ? (event) => {
          const fail = (error: unknown): void => {
            thrown ??= { error };
            callbackFailed.abort(error);
          };
          try {
            // An async callback's rejection counts as a throw.
            const result: unknown = onProgress(event);
            if (result instanceof Promise) {
              const settled = result.catch(fail).finally(() => pending.delete(settled));
              pending.add(settled);
            }
          } catch (error) {
            fail(error);
          }
        }
      : undefined,
  } satisfies TransferOptions;
  let result: T;
  try {
    result = await body(guarded);
    await Promise.all(pending);
  } catch (err) {
    if (thrown) throw thrown.error;
    // Whatever layer noticed the abort, and whatever it named (a blob, nothing), the command's own input is the subject.
    if (signal?.aborted) throw aborted();
    throw err;
  }
  // Thrown at the last event, too late to stop anything: the command still fails with it.
  if (thrown) throw thrown.error;
  return result;
}
