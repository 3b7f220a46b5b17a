import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { build } from '../../src/commands/build.js';
import { isCkptError } from '../../src/errors.js';
import { fixture, tempDir } from '../helpers/tree.js';

it('a build aborted while it reads fails with ABORTED and leaves no layout behind', async () => {
  const layout = join(await tempDir(), 'layout');
  const controller = new AbortController();
  const running = build(fixture('podman-counter.tar.zst'), `oci:${layout}:t`, { signal: controller.signal, hostInfo: false });
  controller.abort();
  const err = await running.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isCkptError(err, 'ABORTED'), String(err)).toBe(true);
  expect((err as Error).message).toContain('operation aborted');
  await expect(stat(layout)).rejects.toThrow(/ENOENT/);
});
