// The harness proven with no ckpt involved: real Podman and CRIU round trips in the Debian 13 root,
// through a real registry. If these fail, the ckpt round trips (ckpt-roundtrip.test.ts) cannot
// say anything about ckpt.

import { beforeAll, describe, expect, it } from 'vitest';
import {
  type Compress,
  type Registry,
  Session,
  checkpointExport,
  checkpointImage,
  copyWithoutAnnotations,
  criuDump,
  criuRestore,
  expectContinues,
  expectRawContinues,
  isAlive,
  readCounter,
  removeContainerAndImages,
  restoreImage,
  restoreImport,
  runCounter,
  sh,
  startRawLoop,
  useSession,
} from './harness.js';

const EXT: Record<Compress, string> = { none: 'tar', gzip: 'tar.gz', zstd: 'tar.zst' };

describe('harness: Podman and CRIU round trips without ckpt', () => {
  const suite = useSession();
  const { raws } = suite;
  let s: Session;
  let reg: Registry;
  beforeAll(() => {
    ({ session: s, registry: reg } = suite);
  });

  it.each(['none', 'gzip', 'zstd'] as const)(
    'podman container checkpoint --export --compress %s, then restore --import, continues the counter',
    async (compress) => {
      const name = `plain-export-${compress}`;
      await runCounter(s, name);
      const file = `/e2e/${name}.${EXT[compress]}`;
      const at = await checkpointExport(s, name, file, compress);
      expect(at).toBeGreaterThan(0);
      await removeContainerAndImages(s, name);
      await restoreImport(s, file);
      const after = await expectContinues(s, name, at);
      expect(after).toBeGreaterThan(at);
    },
  );

  it('podman checkpoint --create-image, podman push, everything removed, podman pull + restore REF continues', async () => {
    const name = 'plain-image';
    await runCounter(s, name);
    const ref = `${reg.host}/plain/counter:v1`;
    const at = await checkpointImage(s, name, ref);
    await s.run(`podman push --quiet ${sh(ref)}`);
    await removeContainerAndImages(s, name);
    expect((await s.run(`podman image exists ${sh(ref)}`, { check: false })).exitCode).toBe(1);
    await restoreImage(s, ref, { pull: true });
    expect(await expectContinues(s, name, at)).toBeGreaterThan(at);
  });

  it('Podman 5.4 does not pull a checkpoint image by itself on restore (so the suite pulls first)', async () => {
    const name = 'plain-nopull';
    await runCounter(s, name);
    const ref = `${reg.host}/plain/nopull:v1`;
    await checkpointImage(s, name, ref);
    await s.run(`podman push --quiet ${sh(ref)}`);
    await removeContainerAndImages(s, name);
    await expect(restoreImage(s, ref)).rejects.toThrow(/no such container or image/);
  });

  it('a broken checkpoint image (runtime.name annotation removed) makes the restore fail with a clear message', async () => {
    const name = 'plain-broken';
    await runCounter(s, name);
    const ref = `${reg.host}/plain/broken:good`;
    await checkpointImage(s, name, ref);
    await s.run(`podman push --quiet ${sh(ref)}`);
    const broken = await copyWithoutAnnotations(reg, 'plain/broken', 'good', 'no-runtime-name', [
      'io.podman.annotations.checkpoint.runtime.name',
    ]);
    await removeContainerAndImages(s, name);
    // This is how a round-trip test fails on a broken image: the harness names the command,
    // the image and Podman's own words.
    await expect(restoreImage(s, broken, { pull: true })).rejects.toThrow(
      /restoring the checkpoint image .*plain\/broken:no-runtime-name with Podman failed: .*image is not a checkpoint/,
    );
  });

  it('raw criu dump -t PID -D DIR of a plain busybox loop, then criu restore -D DIR -d, continues', async () => {
    const p = await startRawLoop(s, '/e2e/raw-plain');
    raws.push(p);
    const at = await criuDump(s, p, '/e2e/raw-plain/images');
    expect(isAlive(p.pid), `pid ${p.pid} after criu dump`).toBe(false);
    await criuRestore(s, '/e2e/raw-plain/images');
    expect(await expectRawContinues(s, p, at)).toBeGreaterThan(at);
  });

  it('the counter reads back through podman exec while running', async () => {
    await runCounter(s, 'plain-read');
    const a = await readCounter(s, 'plain-read');
    await new Promise((r) => setTimeout(r, 700));
    expect(await readCounter(s, 'plain-read')).toBeGreaterThan(a);
  });
});
