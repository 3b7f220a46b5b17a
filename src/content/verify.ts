import { createHash, type Hash } from 'node:crypto';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { CkptError } from '../errors.js';
import { hasherFor } from '../oci/digest.js';
import type { Descriptor } from '../oci/schemas.js';

/**
 * A pass-through that fails the stream when the bytes that flowed through it exceed the expected
 * size, or at the end do not match the expected size and digest. Every read ckpt does goes through
 * one, so nothing unverified is ever passed on as complete. With `hash` false it checks the size
 * only: for a reader that checks the digest itself (FetchOptions.digestCheckedByCaller).
 */
export class VerifyStream extends Transform {
  readonly #hash;
  readonly #desc: Pick<Descriptor, 'digest' | 'size'>;
  readonly #subject: string;
  #seen = 0;

  constructor(desc: Pick<Descriptor, 'digest' | 'size'>, subject: string, hash = true) {
    super();
    this.#desc = desc;
    this.#subject = subject;
    this.#hash = hash ? hasherFor(desc.digest) : undefined;
  }

  get bytes(): number {
    return this.#seen;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.#seen += chunk.length;
    if (this.#seen > this.#desc.size) {
      done(this.#sizeError());
      return;
    }
    this.#hash?.update(chunk);
    done(null, chunk);
  }

  override _flush(done: TransformCallback): void {
    if (this.#seen !== this.#desc.size) {
      done(this.#sizeError());
      return;
    }
    done(this.#hash ? digestMismatch(this.#desc.digest, this.#hash, this.#subject) : null);
  }

  #sizeError(): CkptError {
    return new CkptError(
      'SIZE_MISMATCH',
      `blob ${this.#desc.digest} is ${this.#seen > this.#desc.size ? 'larger' : 'smaller'} than its ${this.#desc.size} bytes (got ${this.#seen}${this.#seen > this.#desc.size ? '+' : ''})`,
      { subject: this.#subject },
    );
  }
}

/** DIGEST_MISMATCH unless `hash`, fed every byte, gives `digest`; null when it does. */
export function digestMismatch(digest: string, hash: Hash, subject: string): CkptError | null {
  const actual = `${digest.split(':')[0]}:${hash.digest('hex')}`;
  return actual === digest ? null : new CkptError('DIGEST_MISMATCH', `content of ${digest} has digest ${actual}`, { subject });
}

/** Throws SIZE_MISMATCH or DIGEST_MISMATCH unless `bytes` are what `desc` describes. */
export function checkBytes(bytes: Buffer, desc: Pick<Descriptor, 'digest' | 'size'>, subject: string): void {
  if (bytes.length !== desc.size) {
    throw new CkptError('SIZE_MISMATCH', `${desc.digest} is ${desc.size} bytes, not ${bytes.length}`, { subject });
  }
  const mismatch = digestMismatch(desc.digest, hasherFor(desc.digest).update(bytes), subject);
  if (mismatch) throw mismatch;
}

/** Counts and hashes what flows through it; the descriptor is known once the stream ends. */
export class DigestStream extends Transform {
  readonly #hash = createHash('sha256');
  #size = 0;
  #digest: string | undefined;

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.#size += chunk.length;
    this.#hash.update(chunk);
    done(null, chunk);
  }

  override _flush(done: TransformCallback): void {
    this.#digest = `sha256:${this.#hash.digest('hex')}`;
    done();
  }

  get size(): number {
    return this.#size;
  }

  /** The sha256 digest; only valid after the stream has ended. */
  get digest(): string {
    if (!this.#digest) throw new Error('DigestStream: digest read before the end of the stream');
    return this.#digest;
  }
}

/**
 * A stream whose producer hashed what it yields (a layer written on a worker thread): its digest
 * and size are known once it has ended, and a store need not hash the bytes a second time.
 */
export abstract class HashedReadable extends Readable {
  /** The sha256 digest; only valid after the stream has ended. */
  abstract get digest(): string;
  abstract get size(): number;

  /**
   * Gives back a chunk this stream yielded, once the consumer has copied it and keeps no
   * reference to it: the producer may write into its memory again.
   */
  recycle(chunk: Buffer): void {
    void chunk;
  }
}
