import { createHash, type Hash } from 'node:crypto';
import { CkptError } from '../errors.js';

const DIGEST_RE = /^sha256:[a-f0-9]{64}$|^sha512:[a-f0-9]{128}$/;

/** A digest ckpt accepts: sha256 or sha512, lower-case hex, the full length. */
export function isDigest(value: string): boolean {
  return DIGEST_RE.test(value);
}

export function assertDigest(value: string, subject?: string): string {
  if (!isDigest(value)) {
    throw new CkptError('INVALID_MANIFEST', `invalid digest ${JSON.stringify(value)}`, { subject });
  }
  return value;
}

/** Splits a validated digest into algorithm and hex, safe to use as path components. */
export function digestParts(digest: string): { algorithm: 'sha256' | 'sha512'; hex: string } {
  assertDigest(digest);
  const [algorithm, hex] = digest.split(':') as ['sha256' | 'sha512', string];
  return { algorithm, hex };
}

export function sha256(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

export function hasherFor(digest: string): Hash {
  return createHash(digestParts(digest).algorithm);
}
