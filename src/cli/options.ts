import { InvalidArgumentError } from 'commander';
import { COMPRESSIONS, type Compression } from '../compress/codec.js';
import { COMPATS, type Compat } from '../image/annotations.js';
import { parseSize } from './format.js';

/** Parsers for option values shared by several commands; each rejects bad input with a sentence. */

export function compressionOption(value: string): Compression {
  if (!(COMPRESSIONS as readonly string[]).includes(value)) {
    throw new InvalidArgumentError(`expected one of ${COMPRESSIONS.join(', ')}`);
  }
  return value as Compression;
}

export function compatOption(value: string): Compat {
  if (!(COMPATS as readonly string[]).includes(value)) throw new InvalidArgumentError(`expected one of ${COMPATS.join(', ')}`);
  return value as Compat;
}

export function integerOption(value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError('expected a whole number');
  return Number(value);
}

/** `--concurrency`: at least one thing at a time. */
export function countOption(value: string): number {
  const count = integerOption(value);
  if (count < 1) throw new InvalidArgumentError('expected a whole number of at least 1');
  return count;
}

export function sizeOption(value: string): number {
  const size = parseSize(value);
  // Past 2^53 a size is no longer an exact integer: far beyond any checkpoint anyway.
  if (size === undefined || size <= 0 || !Number.isSafeInteger(size)) throw new InvalidArgumentError('expected a size such as 256MiB');
  return size;
}

/** Collects repeated `--annotation KEY=VALUE` options into a record. */
export function annotationOption(value: string, previous: Record<string, string> = {}): Record<string, string> {
  const eq = value.indexOf('=');
  if (eq <= 0) throw new InvalidArgumentError('expected KEY=VALUE');
  return { ...previous, [value.slice(0, eq)]: value.slice(eq + 1) };
}
