// Issue 4: real checkpoints moved through ckpt and a real registry must restore, and the restored
// process must carry on from where it stopped. ckpt runs on the host (node dist/cli/ckpt.js),
// talking to the registry on loopback; Podman and CRIU run in the Debian 13 root.
//
// The CLI contract these tests assume:
//   ckpt push SOURCE HOST:PORT/REPO:TAG [--compression zstd|gzip|none] [--plain-http]
//   ckpt build SOURCE REF [--compression zstd|gzip|none]
//   ckpt pull REF OUT.tar          kubelet-layout uncompressed archive (podman restore --import reads it)
//   ckpt pull REF DIR              the checkpoint tree (DIR must not exist yet)
//   ckpt inspect REF --json        JSON with container.name, engine, processes[] (at the top or
//                                  under `metadata`; restorableBy[] checked when present)
// Only push gets --plain-http; build, pull and inspect rely on issue 3's rule that loopback
// registries speak plain HTTP. Exit code 0 on success, non-zero and a message naming the
// reference on failure (pull leaves nothing behind).
// SOURCE is an exported archive (.tar, .tar.gz, .tar.zst) or a directory (checkpoint tree or raw
// CRIU images), given as a host path.

import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  CLI,
  type Compress,
  type Registry,
  Session,
  check,
  checkpointExport,
  checkpointImage,
  ckpt,
  copyWithoutAnnotations,
  criuDump,
  criuRestore,
  expectContinues,
  expectMemoryIntact,
  expectRawContinues,
  getManifest,
  removeContainerAndImages,
  restoreImage,
  restoreImport,
  runCounter,
  sh,
  startRawLoop,
  useSession,
} from './harness.js';

const EXT: Record<Compress, string> = { none: 'tar', gzip: 'tar.gz', zstd: 'tar.zst' };
const LAYER_TYPE: Record<Compress, string> = {
  none: 'application/vnd.oci.image.layer.v1.tar',
  gzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  zstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
};

interface Manifest {
  mediaType?: string;
  artifactType?: string;
  layers: { mediaType: string; digest: string; size: number }[];
  annotations?: Record<string, string>;
}

describe('ckpt round trips with real CRIU, Podman and a registry', () => {
  const suite = useSession();
  const { raws } = suite;
  let s: Session;
  let reg: Registry;
  beforeAll(() => {
    ({ session: s, registry: reg } = suite);
  });

  /** Run ckpt on the host and fail with its command line and stderr if it fails. */
  async function ckptOk(...args: string[]) {
    if (!existsSync(CLI)) throw new Error(`ckpt is not built: ${CLI} is missing (run \`npm run build\` first)`);
    return check(await ckpt(args), 'ckpt failed');
  }

  async function manifestOf(repo: string, tag: string): Promise<Manifest> {
    return (await getManifest(reg, repo, tag)).body as unknown as Manifest;
  }

  /** What PRODUCT.md says a Podman checkpoint image carries, so that Podman restores it. */
  function expectPodmanAnnotations(m: Manifest, container: string) {
    expect(m.artifactType).toBe('application/vnd.ckpt.checkpoint.v1');
    const a = m.annotations ?? {};
    expect(a['io.podman.annotations.checkpoint.name']).toBe(container);
    expect(a['io.podman.annotations.checkpoint.runtime.name']).toBe('runc');
    expect(a['io.podman.annotations.checkpoint.rootfsImageName']).toBe('localhost/bbox:motd');
    expect(a['org.opencontainers.image.created']).toBeTruthy();
    expect(a['org.opencontainers.image.base.name']).toBeTruthy();
    const criuKeys = Object.keys(a).filter((k) => k.startsWith('org.criu.checkpoint.'));
    expect(criuKeys.length, `org.criu.checkpoint.* annotations: ${criuKeys.join(', ')}`).toBeGreaterThanOrEqual(5);
    // A metadata layer, the pages and the file-system diff: never a single layer.
    expect(m.layers.length).toBeGreaterThanOrEqual(2);
  }

  it.each(['none', 'gzip', 'zstd'] as const)(
    'podman export --compress %s -> ckpt push -> registry -> container and images removed -> podman restore REF continues',
    async (compress) => {
      const name = `push-${compress}`;
      await runCounter(s, name);
      const file = `/e2e/${name}.${EXT[compress]}`;
      const at = await checkpointExport(s, name, file, compress);
      await removeContainerAndImages(s, name);
      const ref = `${reg.host}/push/counter:${compress}`;
      await ckptOk('push', s.hostPath(file), ref, '--plain-http');
      expectPodmanAnnotations(await manifestOf('push/counter', compress), name);
      await restoreImage(s, ref, { pull: true });
      expect(await expectContinues(s, name, at)).toBeGreaterThan(at);
    },
  );

  it.each(['zstd', 'gzip', 'none'] as const)(
    'ckpt build --compression %s straight into the registry -> podman restore REF continues',
    async (compression) => {
      const name = `build-${compression}`;
      await runCounter(s, name);
      const file = `/e2e/${name}.tar`;
      const at = await checkpointExport(s, name, file, 'none');
      await removeContainerAndImages(s, name);
      const ref = `${reg.host}/build/counter:${compression}`;
      await ckptOk('build', s.hostPath(file), ref, '--compression', compression);
      const m = await manifestOf('build/counter', compression);
      expectPodmanAnnotations(m, name);
      for (const l of m.layers) expect(l.mediaType).toBe(LAYER_TYPE[compression]);
      await restoreImage(s, ref, { pull: true });
      expect(await expectContinues(s, name, at)).toBeGreaterThan(at);
    },
  );

  it('ckpt pull REF out.tar -> podman container restore --import out.tar continues', async () => {
    const name = 'pull-tar';
    await runCounter(s, name);
    const file = `/e2e/${name}.tar.zst`;
    const at = await checkpointExport(s, name, file, 'zstd');
    await removeContainerAndImages(s, name);
    const ref = `${reg.host}/pull/counter:tar`;
    await ckptOk('push', s.hostPath(file), ref, '--plain-http');
    await s.run(`rm -f ${sh(file)}`);
    const out = '/e2e/pulled/out.tar';
    await s.run('mkdir -p /e2e/pulled');
    await ckptOk('pull', ref, s.hostPath(out));
    await restoreImport(s, out);
    expect(await expectContinues(s, name, at)).toBeGreaterThan(at);
  });

  it('ckpt push of a raw criu dump -> ckpt pull REF DIR -> criu restore -D DIR continues', async () => {
    const p = await startRawLoop(s, '/e2e/raw-ckpt');
    raws.push(p);
    const images = '/e2e/raw-ckpt/images';
    const at = await criuDump(s, p, images);
    const ref = `${reg.host}/raw/loop:v1`;
    await ckptOk('push', s.hostPath(images), ref, '--plain-http');
    await s.run(`rm -rf ${sh(images)}`); // only what came back from the registry may restore
    const dir = '/e2e/raw-ckpt/pulled';
    await ckptOk('pull', ref, s.hostPath(dir));
    expect(existsSync(join(s.hostPath(dir), 'inventory.img')), 'inventory.img at the top of the pulled tree').toBe(true);
    await criuRestore(s, dir);
    expect(await expectRawContinues(s, p, at)).toBeGreaterThan(at);
  });

  it('a checkpoint holding ~200 MB of memory restores with that memory intact', async () => {
    const name = 'memory-200';
    await runCounter(s, name, { memoryMB: 200 });
    const file = `/e2e/${name}.tar`;
    const at = await checkpointExport(s, name, file, 'none');
    // The test itself holds what it claims: at least 200 MB of memory pages in the checkpoint.
    const pages = await s.run(`tar -tvf ${sh(file)} | awk '$6 ~ /pages-.*\\.img$/ { s += $3 } END { print s + 0 }'`);
    expect(Number(pages.stdout.trim())).toBeGreaterThan(200 * 1024 * 1024);
    await removeContainerAndImages(s, name);
    const ref = `${reg.host}/memory/counter:200mb`;
    await ckptOk('push', s.hostPath(file), ref, '--plain-http');
    await s.run(`rm -f ${sh(file)}`);
    await restoreImage(s, ref, { pull: true });
    expect(await expectContinues(s, name, at)).toBeGreaterThan(at);
    await expectMemoryIntact(s, name);
  });

  it('an image from podman checkpoint --create-image, pushed by Podman: ckpt inspect and ckpt pull give its metadata and tree', async () => {
    const name = 'podman-made';
    await runCounter(s, name);
    const ref = `${reg.host}/podman/counter:v1`;
    await checkpointImage(s, name, ref);
    await s.run(`podman push --quiet ${sh(ref)}`);
    // The image's own file tree, as Podman sees it, hashed inside the root.
    const mnt = (await s.run(`podman image mount ${sh(ref)}`)).stdout.trim();
    const want = (await s.run(`cd ${sh(mnt)} && find . -type f -print0 | sort -z | xargs -0r sha256sum`)).stdout;
    await s.run(`podman image unmount ${sh(ref)} >/dev/null`);
    await removeContainerAndImages(s, name);

    const info = await ckptOk('inspect', ref, '--json');
    type Meta = { container?: { name?: string }; engine?: string; processes?: unknown[]; restorableBy?: string[] };
    const top = JSON.parse(info.stdout) as Meta & { metadata?: Meta };
    const j = top.metadata ?? top; // the checkpoint's metadata, at the top or under `metadata`
    expect(j.container?.name).toBe(name);
    expect(String(j.engine)).toMatch(/podman/i);
    expect(Array.isArray(j.processes) && j.processes.length).toBeGreaterThanOrEqual(1);
    // Compatibility is honest: a Podman checkpoint says Podman restores it.
    if (j.restorableBy) expect(j.restorableBy.join(' ')).toMatch(/podman/i);

    const dir = '/e2e/podman-made';
    await ckptOk('pull', ref, s.hostPath(dir));
    const got = (await s.run(`cd ${sh(dir)} && find . -type f -print0 | sort -z | xargs -0r sha256sum`)).stdout;
    expect(got).toBe(want);
    expect(JSON.parse(await readFile(join(s.hostPath(dir), 'deleted.files'), 'utf8'))).toContain('/etc/motd');
    for (const f of ['config.dump', 'spec.dump', 'rootfs-diff.tar', 'checkpoint/inventory.img']) {
      expect(existsSync(join(s.hostPath(dir), f)), f).toBe(true);
    }
  });

  describe('a deliberately broken image makes the matching restore fail with a clear message', () => {
    it('runtime.name annotation removed from an image ckpt pushed: Podman refuses it', async () => {
      const name = 'broken-annotation';
      await runCounter(s, name);
      const file = `/e2e/${name}.tar`;
      await checkpointExport(s, name, file, 'none');
      await removeContainerAndImages(s, name);
      await ckptOk('push', s.hostPath(file), `${reg.host}/broken/counter:good`, '--plain-http');
      const broken = await copyWithoutAnnotations(reg, 'broken/counter', 'good', 'no-runtime-name', [
        'io.podman.annotations.checkpoint.runtime.name',
      ]);
      await expect(restoreImage(s, broken, { pull: true })).rejects.toThrow(
        /restoring the checkpoint image .*broken\/counter:no-runtime-name with Podman failed: .*image is not a checkpoint/,
      );
    });

    it('a layer missing from the registry: the pull fails and names the image', async () => {
      const name = 'broken-layer';
      await runCounter(s, name);
      const file = `/e2e/${name}.tar`;
      await checkpointExport(s, name, file, 'none');
      await removeContainerAndImages(s, name);
      const ref = `${reg.host}/broken/layer:v1`;
      await ckptOk('push', s.hostPath(file), ref, '--plain-http');
      const m = await manifestOf('broken/layer', 'v1');
      const last = m.layers[m.layers.length - 1];
      if (!last) throw new Error(`${ref} has no layers`);
      const del = await fetch(`${reg.url}/v2/broken/layer/blobs/${last.digest}`, { method: 'DELETE' });
      expect(del.status).toBe(202);
      await expect(restoreImage(s, ref, { pull: true })).rejects.toThrow(/pulling .*broken\/layer:v1 with Podman failed/);
      const r = await ckpt(['pull', ref, s.hostPath('/e2e/broken-layer-pulled')]);
      expect(r.exitCode).not.toBe(0);
      expect(r.stderr).toMatch(/broken\/layer/);
      expect(existsSync(s.hostPath('/e2e/broken-layer-pulled')), 'nothing half-written').toBe(false);
    });
  });
});
