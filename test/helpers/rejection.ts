import { expect } from 'vitest';
import { CkptError } from '../../src/errors.js';

/** The CkptError a promise rejects with; fails the test when it resolves or throws anything else. */
export async function rejection(promise: Promise<unknown>): Promise<CkptError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CkptError);
  return err as CkptError;
}
