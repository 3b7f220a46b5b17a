import { existsSync } from 'node:fs';
import { chmod, readFile, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { expect, it } from 'vitest';
import { build } from '../../src/commands/build.js';
import { copy } from '../../src/commands/copy.js';
import { isCkptError } from '../../src/errors.js';
import { OciLayout } from '../../src/layout/store.js';
import { extractFixture, fixture, tempDir } from '../helpers/tree.js';

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

/**
 * Runs `operation` `times` times, aborting each after 0-9 ms: each must fail with ABORTED (or
 * finish first), and nothing may be thrown at the process meanwhile.
 */
async function abortedAtAnyMoment(times: number, operation: (signal: AbortSignal, i: number) => Promise<unknown>): Promise<void> {
  const thrown: unknown[] = [];
  const onUncaught = (err: unknown): void => void thrown.push(err);
  process.on('uncaughtException', onUncaught);
  try {
    let aborted = 0;
    for (let i = 0; i < times; i++) {
      const controller = new AbortController();
      const running = operation(controller.signal, i);
      setTimeout(() => controller.abort(), i % 10);
      const err = await running.then(
        () => undefined,
        (e: unknown) => e,
      );
      if (err !== undefined) {
        expect(isCkptError(err, 'ABORTED'), String(err)).toBe(true);
        aborted++;
      }
    }
    await sleep(200);
    expect(aborted).toBeGreaterThan(0);
    expect(thrown).toEqual([]);
  } finally {
    process.off('uncaughtException', onUncaught);
  }
}

it('a build of a directory aborted at any moment fails with ABORTED, and no file it opened throws at the process', async () => {
  const dir = await extractFixture('podman-counter.tar');
  // Several layers, so that files wait for a layer while the abort comes.
  await abortedAtAnyMoment(40, async (signal) =>
    build(dir, `oci:${join(await tempDir(), 'layout')}:t`, { signal, hostInfo: false, maxLayerBytes: 100_000 }),
  );
});

it('a copy between layouts aborted at any moment fails with ABORTED, and no blob it opened throws at the process', async () => {
  const work = await tempDir();
  await build(fixture('podman-counter.tar'), `oci:${join(work, 'src')}:t`, { hostInfo: false, maxLayerBytes: 100_000 });
  await abortedAtAnyMoment(30, (signal, i) => copy(`oci:${join(work, 'src')}:t`, `oci:${join(work, `copy-${i}`)}:t`, { signal }));
});

it('a copy into a new layout that fails while other blobs are in flight leaves no layout behind', async () => {
  const work = await tempDir();
  await build(fixture('podman-counter.tar'), `oci:${join(work, 'src')}:t`, { hostInfo: false, maxLayerBytes: 100_000 });
  // Aborted at the first event, one blob at a time: the others are still queued or being written.
  const aborted = new AbortController();
  const err = await copy(`oci:${join(work, 'src')}:t`, `oci:${join(work, 'aborted')}:t`, {
    signal: aborted.signal,
    concurrency: 1,
    onProgress: () => aborted.abort(),
  }).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isCkptError(err, 'ABORTED')).toBe(true);
  expect(existsSync(join(work, 'aborted'))).toBe(false);
  // A corrupt blob fails the copy while the larger ones are still being written.
  const layout = await OciLayout.open(join(work, 'src'));
  const manifest = JSON.parse((await readFile(layout.blobPath((await layout.resolve('t')).digest))).toString()) as { config: { digest: string } };
  const config = layout.blobPath(manifest.config.digest);
  await chmod(config, 0o644);
  await writeFile(config, Buffer.alloc((await stat(config)).size));
  const corrupt = await copy(`oci:${join(work, 'src')}:t`, `oci:${join(work, 'corrupt')}:t`).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isCkptError(corrupt, 'DIGEST_MISMATCH')).toBe(true);
  expect(existsSync(join(work, 'corrupt'))).toBe(false);
});

it('a build that fails in a new layout leaves what another build tagged there meanwhile', async () => {
  const layout = join(await tempDir(), 'layout');
  // Memory that takes far longer to read than the other build takes: 64 GiB of zeros, sparse.
  const slow = await extractFixture('podman-counter.tar');
  await truncate(join(slow, 'checkpoint/pages-1.img'), 64 * 2 ** 30);
  const controller = new AbortController();
  const failing = build(slow, `oci:${layout}:slow`, { signal: controller.signal, hostInfo: false }).then(
    () => undefined,
    (e: unknown) => e,
  );
  for (let waited = 0; !existsSync(join(layout, 'oci-layout')); waited += 10) {
    if (waited > 10_000) throw new Error('the slow build made no layout');
    await sleep(10);
  }
  await build(fixture('crio-counter.tar'), `oci:${layout}:other`, { hostInfo: false });
  controller.abort();
  const err = await failing;
  expect(isCkptError(err, 'ABORTED'), (err as Error).stack).toBe(true);
  expect(await (await OciLayout.open(layout)).tags()).toEqual(['other']);
  await execa('skopeo', ['inspect', `oci:${layout}:other`]);
});
