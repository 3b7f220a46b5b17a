import { pipeline, type Readable, Transform } from 'node:stream';
import type { Descriptor } from '../oci/schemas.js';
import type { ReadOnlyTarget, TransferOptions } from './target.js';

/** Counts the bytes read from a store: what `inspect --verbose` reports as fetched. */
export class ByteMeter {
  bytes = 0;

  /** A pass-through that adds what flows through it to the count. */
  counter(): Transform {
    return new Transform({
      transform: (chunk: Buffer, _enc, done) => {
        this.bytes += chunk.length;
        done(null, chunk);
      },
    });
  }
}

/** The same target, with every blob and manifest it returns counted by `meter`. */
export function metered<T extends ReadOnlyTarget>(target: T, meter: ByteMeter): T {
  return new Proxy(target, {
    get(obj, key) {
      if (key === 'fetch') {
        return async (desc: Descriptor, options?: TransferOptions): Promise<Readable> =>
          pipeline(await obj.fetch(desc, options), meter.counter(), () => undefined);
      }
      // The root manifest or index, read with its tag in one request: fetched too.
      const fetchReference = obj.fetchReference?.bind(obj);
      if (key === 'fetchReference' && fetchReference) {
        return async (reference: string, options?: TransferOptions): Promise<{ desc: Descriptor; bytes: Buffer }> => {
          const fetched = await fetchReference(reference, options);
          meter.bytes += fetched.bytes.length;
          return fetched;
        };
      }
      const value: unknown = Reflect.get(obj, key, obj);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(obj) : value;
    },
  });
}
