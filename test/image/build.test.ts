import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, readdir, readFile, rm, stat, truncate, utimes, writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import type { CheckpointSource } from '../../src/checkpoint/entry.js';
import { openCheckpoint } from '../../src/checkpoint/open.js';
import { build } from '../../src/commands/build.js';
import { inspect } from '../../src/commands/inspect.js';
import { pull } from '../../src/commands/pull.js';
import { type BuildImageResult, buildImage } from '../../src/image/build.js';
import { BuildCache } from '../../src/image/cache.js';
import { OciLayout } from '../../src/layout/store.js';
import { CHECKPOINT_ARTIFACT_TYPE, MediaType } from '../../src/oci/mediatypes.js';
import { IndexSchema, ManifestSchema, ImageConfigSchema } from '../../src/oci/schemas.js';
import { ARCHIVE_FIXTURES, extractFixture, fixture, tempDir, treeOf } from '../helpers/tree.js';

async function blobJson(layoutDir: string, digest: string): Promise<unknown> {
  return JSON.parse(await readFile(join(layoutDir, 'blobs', 'sha256', digest.slice(7)), 'utf8'));
}

/** Unpacks with umoci (gzip and plain layers) and returns the root file system. */
async function umociUnpack(layoutDir: string, tag: string): Promise<string> {
  const bundle = join(await tempDir('ckpt-umoci-'), 'bundle');
  await execa('umoci', ['unpack', '--image', `${layoutDir}:${tag}`, bundle]);
  return join(bundle, 'rootfs');
}

/** umoci 0.4 predates zstd layers: skopeo (which reads them) recompresses to gzip for it. */
async function viaSkopeoGzip(layoutDir: string, tag: string): Promise<string> {
  const copy = join(await tempDir('ckpt-skopeo-'), 'layout');
  await execa('skopeo', ['copy', '--dest-compress-format', 'gzip', '--dest-compress', `oci:${layoutDir}:${tag}`, `oci:${copy}:${tag}`]);
  return umociUnpack(copy, tag);
}

async function expectSameTree(actual: string, expected: string): Promise<void> {
  const [a, e] = await Promise.all([treeOf(actual), treeOf(expected)]);
  expect([...a.keys()]).toEqual([...e.keys()]);
  for (const [path, item] of e) expect(a.get(path), path).toEqual(item);
}

describe('build from every fixture into an OCI layout', () => {
  let layout: string;
  beforeAll(async () => {
    layout = join(await tempDir(), 'layout');
  });

  for (const name of [...ARCHIVE_FIXTURES, 'criu-raw-shell']) {
    it(`${name}: skopeo reads it and the unpacked tree equals the checkpoint`, async () => {
      const tag = name.replace(/[^a-z0-9]/g, '-');
      await build(fixture(name), `oci:${layout}:${tag}`);
      const { stdout } = await execa('skopeo', ['inspect', `oci:${layout}:${tag}`]);
      const inspected = JSON.parse(stdout) as { Architecture: string; Os: string; Layers: string[] };
      expect(inspected).toMatchObject({ Architecture: 'amd64', Os: 'linux' });
      expect(inspected.Layers.length).toBeGreaterThanOrEqual(2);
      const original = name === 'criu-raw-shell' ? fixture(name) : await extractFixture(name);
      await expectSameTree(await viaSkopeoGzip(layout, tag), original);
    });
  }

  it('a directory keeps each file in its own second when its time falls in the last millisecond of one', async () => {
    // Node's Stats.mtime rounds to the millisecond: 5.9997 s read that way would become 6 s.
    const dir = join(await tempDir(), 'late');
    await execa('cp', ['-r', fixture('criu-raw-shell'), dir]);
    await execa('find', [dir, '-type', 'f', '-exec', 'touch', '-m', '-d', '@1767225605.9997', '{}', '+']);
    await build(dir, `oci:${layout}:late`, { compression: 'gzip' });
    const rootfs = await umociUnpack(layout, 'late');
    expect(new Set([...(await treeOf(rootfs)).values()].map((item) => item.mtime))).toEqual(new Set([1767225605]));
    await expectSameTree(rootfs, dir);
  });

  it('a raw dump gives the same image from its directory, its archive and its own image', async () => {
    // The checkpoint time of a raw dump is inventory.img's mtime, which only a directory has to the millisecond.
    const dir = join(await tempDir(), 'raw');
    await execa('cp', ['-r', fixture('criu-raw-shell'), dir]);
    await utimes(join(dir, 'inventory.img'), 1767225605.395, 1767225605.395);
    const archive = `${dir}.tar`;
    await execa('tar', ['-cf', archive, '-C', dir, '.']);
    const fromDir = await build(dir, `oci:${layout}:raw-dir`, { hostInfo: false });
    expect(fromDir.metadata.checkpointed).toBe('2026-01-01T00:00:05.000Z');
    const fromImage = await build(`oci:${layout}:raw-dir`, `oci:${layout}:raw-image`, { hostInfo: false });
    expect(fromImage.descriptor.digest).toBe(fromDir.descriptor.digest);
    const fromArchive = await build(archive, `oci:${layout}:raw-archive`, { hostInfo: false });
    expect(fromArchive.metadata.checkpointed).toBe(fromDir.metadata.checkpointed);
  });

  it('makes a new layout readable by its owner only, in an existing empty directory too, whose mode a failed build gives back', async () => {
    const made = join(await tempDir(), 'private');
    await build(fixture('podman-counter.tar'), `oci:${made}:v1`, { hostInfo: false });
    expect((await stat(made)).mode & 0o777).toBe(0o700);
    const existing = join(await tempDir(), 'existing');
    await mkdir(existing);
    await chmod(existing, 0o755);
    const truncated = join(await tempDir(), 'truncated.tar');
    await copyFile(fixture('podman-counter.tar'), truncated);
    await truncate(truncated, 600_000);
    await expect(build(truncated, `oci:${existing}:v1`, { hostInfo: false })).rejects.toThrow(/truncated or corrupt/);
    expect([await readdir(existing), (await stat(existing)).mode & 0o777]).toEqual([[], 0o755]);
    await build(fixture('podman-counter.tar'), `oci:${existing}:v1`, { hostInfo: false });
    expect((await stat(existing)).mode & 0o777).toBe(0o700);
  });

  it('keeps several tags in one layout and adds to it', async () => {
    const layoutStore = await OciLayout.open(layout);
    expect(await layoutStore.tags()).toEqual(expect.arrayContaining(['podman-counter-tar', 'crio-counter-tar', 'criu-raw-shell']));
  });
});

describe('the checkpoint image', () => {
  let layout: string;
  let result: BuildImageResult;
  beforeAll(async () => {
    layout = join(await tempDir(), 'layout');
    result = await build(fixture('podman-counter.tar'), `oci:${layout}:counter`, { hostInfo: false });
  });

  it('is an OCI manifest marked as a checkpoint, with metadata, pages and file-system layers in that order', async () => {
    const manifest = ManifestSchema.parse(await blobJson(layout, result.descriptor.digest));
    expect(manifest.mediaType).toBe(MediaType.imageManifest);
    expect(manifest.artifactType).toBe(CHECKPOINT_ARTIFACT_TYPE);
    expect(manifest.config.mediaType).toBe(MediaType.imageConfig);
    expect(manifest.layers.map((l) => l.annotations?.['dev.ckpt.layer'])).toEqual(['metadata', 'pages', 'rootfs-diff']);
    expect(manifest.layers.every((l) => l.mediaType === MediaType.layerZstd)).toBe(true);
  });

  it('starts every pages layer with the directory its files are in, as the checkpoint has it (runtimes unpack layers apart)', async () => {
    const original = (await execa('tar', ['-tvf', fixture('podman-counter.tar'), 'checkpoint/', '--no-recursion'])).stdout;
    // drw------- 0/0 0 2026-11-27 13:34 checkpoint/
    const [mode, owner, , day, minute] = original.split(/\s+/);
    const cases: Array<[string, Parameters<typeof build>[2]]> = [
      ['podman-counter.tar', {}], // read by offset, on a worker
      ['podman-counter.tar.zst', {}], // fed to a worker
      ['podman-counter.tar', { compression: 'gzip' }], // through tar-stream
    ];
    for (const [name, options] of cases) {
      const dir = join(await tempDir(), 'layout');
      const built = await build(fixture(name), `oci:${dir}:t`, { hostInfo: false, maxLayerBytes: 4096, ...options });
      const pages = built.layers.filter((l) => l.role === 'pages');
      expect(pages.length, name).toBe(2);
      for (const layer of pages) {
        const blob = join(dir, 'blobs', 'sha256', layer.desc.digest.slice(7));
        const listed = await execa('sh', ['-c', `${options?.compression === 'gzip' ? 'gzip' : 'zstd'} -dc < ${blob} | tar -tv`]);
        const first = listed.stdout.split('\n')[0]?.split(/\s+/) ?? [];
        expect([first[0], first[1], first[3], first[4], first[5]], name).toEqual([mode, owner, day, minute, 'checkpoint/']);
      }
    }
  });

  it('gives the same image again when rebuilt from itself, and a pulled archive counts each directory once', async () => {
    for (const compression of ['zstd', 'gzip', 'none'] as const) {
      const dir = join(await tempDir(), 'layout');
      const first = await build(fixture('podman-counter.tar'), `oci:${dir}:a`, { hostInfo: false, compression });
      const again = await build(`oci:${dir}:a`, `oci:${dir}:b`, { hostInfo: false, compression });
      expect(again.descriptor.digest, compression).toBe(first.descriptor.digest);
    }
    const archive = join(await tempDir(), 'counter.tar');
    await pull(`oci:${layout}:counter`, archive);
    // It lists checkpoint/ again before the pages (tar then sets its time after its last file).
    const names = (await execa('tar', ['-tf', archive])).stdout.split('\n');
    expect(names.filter((name) => name === 'checkpoint/').length).toBeGreaterThan(1);
    const counted = await inspect(archive);
    expect(counted.metadata.files.count).toBe(new Set(names).size);
    expect(counted.metadata.files.count).toBe((await inspect(fixture('podman-counter.tar'))).metadata.files.count);
  });

  it('carries the annotations Podman restores from, and the full org.criu set', async () => {
    const manifest = ManifestSchema.parse(await blobJson(layout, result.descriptor.digest));
    const a = manifest.annotations ?? {};
    expect(a).toMatchObject({
      'io.podman.annotations.checkpoint.name': 'counter',
      'io.podman.annotations.checkpoint.runtime.name': 'runc',
      'io.podman.annotations.checkpoint.rootfsImageName': 'localhost/bbox:motd',
      'io.podman.annotations.checkpoint.rootfsImageID': '79a2716c574c92e9d4ae6147b881ca72d045c39f9cf2e6bc81a0bcbdc771dc1e',
      'org.criu.checkpoint.container.name': 'counter',
      'org.criu.checkpoint.engine.name': 'podman',
      'org.criu.checkpoint.runtime.name': 'runc',
      'org.criu.checkpoint.host.arch': 'amd64',
      'org.opencontainers.image.base.name': 'localhost/bbox:motd',
      'dev.ckpt.memory.bytes': '1052672',
    });
    for (const key of ['engine.version', 'pod.name', 'criu.version', 'host.kernel', 'cgroup.version', 'distribution.name', 'rootfsImageSha']) {
      expect(a).toHaveProperty(`org.criu.checkpoint.${key}`);
    }
    expect(Object.keys(a).some((k) => k.startsWith('io.kubernetes.cri-o.'))).toBe(false);
    expect(a['org.opencontainers.image.created']).toMatch(/^2026-11-27T13:34:/);
  });

  it('has a config with the checkpoint platform, one diff_id and history entry per layer, and mirrored labels', async () => {
    const manifest = ManifestSchema.parse(await blobJson(layout, result.descriptor.digest));
    const config = ImageConfigSchema.parse(await blobJson(layout, manifest.config.digest));
    expect(config.architecture).toBe('amd64');
    expect(config.os).toBe('linux');
    expect(config.rootfs.diff_ids).toHaveLength(3);
    expect(config.history).toHaveLength(3);
    expect(config.config?.Labels?.['org.criu.checkpoint.container.name']).toBe('counter');
  });

  it('gives the same digests when built again', async () => {
    const again = join(await tempDir(), 'layout');
    const second = await build(fixture('podman-counter.tar'), `oci:${again}:counter`, { hostInfo: false });
    expect(second.descriptor.digest).toBe(result.descriptor.digest);
    expect(second.layers.map((l) => l.desc.digest)).toEqual(result.layers.map((l) => l.desc.digest));
  });

  it('cuts memory pages into layers of bounded size without splitting a file', async () => {
    const dir = join(await tempDir(), 'layout');
    const small = await build(fixture('podman-counter.tar'), `oci:${dir}:small`, { hostInfo: false, maxLayerBytes: 100_000 });
    // pages-1.img (960 KiB) is larger than the bound and gets a layer alone; pages-2.img another.
    expect(small.layers.map((l) => l.role)).toEqual(['metadata', 'pages', 'pages', 'rootfs-diff']);
  });
});

describe('compression, compat and annotations', () => {
  for (const compression of ['gzip', 'none'] as const) {
    it(`${compression} layers are read by skopeo and umoci directly`, async () => {
      const layout = join(await tempDir(), 'layout');
      const result = await build(fixture('podman-counter.tar'), `oci:${layout}:c`, { compression });
      expect(result.layers[0]?.desc.mediaType).toBe(compression === 'gzip' ? MediaType.layerGzip : MediaType.layerTar);
      await execa('skopeo', ['inspect', `oci:${layout}:c`]);
      await expectSameTree(await umociUnpack(layout, 'c'), await extractFixture('podman-counter.tar'));
    });
  }

  it('writes the CRI-O family for a CRI-O checkpoint', async () => {
    const layout = join(await tempDir(), 'layout');
    const result = await build(fixture('crio-counter.tar'), `oci:${layout}:c`, { hostInfo: false });
    const a = ManifestSchema.parse(await blobJson(layout, result.descriptor.digest)).annotations ?? {};
    expect(a).toMatchObject({
      'io.kubernetes.cri-o.annotations.checkpoint.name': 'counter',
      'org.criu.checkpoint.pod.name': 'counter-pod',
      'org.criu.checkpoint.pod.namespace': 'default',
      'org.criu.checkpoint.pod.uid': 'uid-counter-pod-1',
      'org.criu.checkpoint.criu.version': '40101',
      'org.criu.checkpoint.host.kernel': '6.18.44-fc-v769',
    });
    expect(Object.keys(a).some((k) => k.startsWith('io.podman.'))).toBe(false);
  });

  it('puts an index carrying org.criu at the tag for containerd', async () => {
    const layout = join(await tempDir(), 'layout');
    const result = await build(fixture('containerd-counter.tar'), `oci:${layout}:c`, { hostInfo: false });
    expect(result.descriptor.mediaType).toBe(MediaType.imageIndex);
    const index = IndexSchema.parse(await blobJson(layout, result.descriptor.digest));
    expect(index.annotations?.['org.criu.checkpoint.container.name']).toBe('counter');
    expect(index.annotations?.['org.opencontainers.image.base.digest']).toMatch(/^sha256:6be3e646/);
    expect(index.manifests[0]?.platform).toEqual({ architecture: 'amd64', os: 'linux' });
    const { stdout } = await execa('skopeo', ['inspect', `oci:${layout}:c`]);
    expect(JSON.parse(stdout)).toMatchObject({ Architecture: 'amd64' });
  });

  it('--compat all writes every family, and user annotations win', async () => {
    const layout = join(await tempDir(), 'layout');
    const result = await build(fixture('podman-counter.tar.zst'), `oci:${layout}:c`, {
      compat: 'all',
      annotations: { 'org.example.team': 'payments', 'io.podman.annotations.checkpoint.name': 'renamed' },
    });
    const index = IndexSchema.parse(await blobJson(layout, result.descriptor.digest));
    const manifest = ManifestSchema.parse(await blobJson(layout, index.manifests[0]?.digest ?? ''));
    expect(manifest.annotations).toMatchObject({
      'io.kubernetes.cri-o.annotations.checkpoint.name': 'counter',
      'io.podman.annotations.checkpoint.name': 'renamed',
      'org.example.team': 'payments',
    });
  });

  it('gives images that differ only in annotations configs of their own (Podman and CRI key images by config)', async () => {
    const layout = join(await tempDir(), 'layout');
    const configOf = async (tag: string, options: Parameters<typeof build>[2]) => {
      const result = await build(fixture('podman-counter.tar'), `oci:${layout}:${tag}`, { hostInfo: false, ...options });
      return result.config.digest;
    };
    const digests = [
      await configOf('auto', {}),
      await configOf('crio', { compat: 'crio' }),
      await configOf('team', { annotations: { 'org.example.team': 'payments' } }),
    ];
    expect(new Set(digests).size).toBe(3);
    const { stdout } = await execa('skopeo', ['inspect', '--config', `oci:${layout}:crio`]);
    expect(JSON.parse(stdout).config.Labels).toMatchObject({ 'io.kubernetes.cri-o.annotations.checkpoint.name': 'counter' });
  });

  it('refuses --compat for a raw CRIU dump before it writes a layer: a directory, or an archive once it reaches the inventory', async () => {
    const store = await OciLayout.open(join(await tempDir(), 'layout'), { create: true });
    let written = 0;
    const ingest = store.ingest.bind(store);
    store.ingest = async (...args) => {
      written++;
      return ingest(...args);
    };
    await expect(buildImage(await openCheckpoint(fixture('criu-raw-shell')), store, { hostInfo: false, compat: 'crio' })).rejects.toMatchObject({ code: 'USAGE' });
    expect(written).toBe(0);
    // The user may name the container for that runtime.
    const named = { 'io.kubernetes.cri-o.annotations.checkpoint.name': 'shell' };
    await buildImage(await openCheckpoint(fixture('criu-raw-shell')), store, { hostInfo: false, compat: 'crio', annotations: named, tag: 't' });
    expect(written).toBeGreaterThan(0);
    // From a compressed archive, read in order: refused at its inventory, with only the metadata layer begun.
    const files = (await readdir(fixture('criu-raw-shell'))).filter((name) => name !== 'inventory.img');
    const archive = join(await tempDir(), 'raw.tar.zst');
    await execa('tar', ['-C', fixture('criu-raw-shell'), '--zstd', '-cf', archive, 'inventory.img', ...files]);
    written = 0;
    await expect(buildImage(await openCheckpoint(archive), store, { hostInfo: false, compat: 'crio' })).rejects.toMatchObject({ code: 'USAGE' });
    expect(written).toBe(1);
  });

  it('refuses --compat for a runtime whose keys a raw CRIU dump cannot fill', async () => {
    for (const compat of ['crio', 'podman', 'containerd', 'all'] as const) {
      const layout = join(await tempDir(), 'layout');
      await expect(build(fixture('criu-raw-shell'), `oci:${layout}:raw`, { hostInfo: false, compat })).rejects.toMatchObject({
        code: 'USAGE',
        message: expect.stringContaining('criu restore'),
      });
      expect(existsSync(layout)).toBe(false);
    }
  });

  it('rebuilds an existing checkpoint image (Podman --create-image) into the ckpt format', async () => {
    const layout = join(await tempDir(), 'layout');
    const source = await openCheckpoint(`oci:${fixture('podman-image-layout')}:counter-ckpt`);
    const target = await OciLayout.open(layout, { create: true });
    const result = await buildImage(source, target, { tag: 'rebuilt', compression: 'gzip' });
    expect(result.metadata.container.name).toBe('counter');
    expect(result.layers.map((l) => l.role)).toEqual(['metadata', 'pages', 'rootfs-diff']);
    // The facts of the node that made it, as the image records them, not this node's.
    const annotations = ManifestSchema.parse(await blobJson(layout, result.descriptor.digest)).annotations ?? {};
    expect(annotations).toMatchObject({
      'io.podman.annotations.checkpoint.podman.version': '5.4.2',
      'io.podman.annotations.checkpoint.criu.version': '40101',
      'io.podman.annotations.checkpoint.host.kernel': '6.18.44-fc-v769',
      'io.podman.annotations.checkpoint.conmon.version': 'conmon version 2.1.12, commit: unknown',
      'org.criu.checkpoint.distribution.version': '13',
      'org.criu.checkpoint.criu.version': '40101',
    });
    await expectSameTree(await umociUnpack(layout, 'rebuilt'), await umociUnpack(fixture('podman-image-layout'), 'counter-ckpt'));
  });
});

describe('a cached build', () => {
  it('checks the target for its layers a few at a time, whatever their number', async () => {
    const layout = join(await tempDir(), 'layout');
    const cache = new BuildCache(await tempDir('ckpt-cache-'));
    // One layer per pages file: 2 pages files, then a target that counts its checks in flight.
    const options = { cache, tag: 't', hostInfo: false, maxLayerBytes: 4096 };
    const first = await buildImage(await openCheckpoint(fixture('podman-counter.tar')), await OciLayout.open(layout, { create: true }), options);
    const store = await OciLayout.open(layout, { create: true });
    let inFlight = 0;
    let most = 0;
    const exists = store.exists.bind(store);
    store.exists = async (desc) => {
      most = Math.max(most, ++inFlight);
      await sleep(20);
      try {
        return await exists(desc);
      } finally {
        inFlight--;
      }
    };
    const again = await buildImage(await openCheckpoint(fixture('podman-counter.tar')), store, { ...options, concurrency: 1 });
    expect(again.descriptor.digest).toBe(first.descriptor.digest);
    expect(first.layers.length).toBeGreaterThan(2);
    expect(most).toBe(1);
    // Checked before anything is read, cache or none.
    const none = join(await tempDir(), 'none');
    await expect(build(fixture('podman-counter.tar'), `oci:${none}:t`, { hostInfo: false, concurrency: 0 })).rejects.toMatchObject({ code: 'USAGE' });
    expect(existsSync(none)).toBe(false);
  });
});

describe('an image made with the Kubernetes buildah recipe', () => {
  it('is a source: ckpt rebuilds it into the same tree, and inspect reads it', async () => {
    const work = await tempDir('ckpt-buildah-');
    const buildah = (...args: string[]) =>
      execa('buildah', ['--root', join(work, 'root'), '--runroot', join(work, 'run'), '--storage-driver', 'vfs', ...args]);
    const container = (await buildah('from', 'scratch')).stdout.trim();
    await buildah('add', container, fixture('crio-counter.tar'), '/');
    await buildah('config', '--annotation=io.kubernetes.cri-o.annotations.checkpoint.name=counter', container);
    await buildah('commit', container, 'checkpoint-image:latest');
    const recipe = join(work, 'recipe');
    await buildah('push', 'checkpoint-image:latest', `oci:${recipe}:latest`);

    const layout = join(work, 'layout');
    const result = await build(`oci:${recipe}:latest`, `oci:${layout}:rebuilt`, { compression: 'gzip', hostInfo: false });
    expect(result.metadata).toMatchObject({ engine: 'cri-o', container: { name: 'counter' }, pod: { name: 'counter-pod' } });
    await expectSameTree(await umociUnpack(layout, 'rebuilt'), await extractFixture('crio-counter.tar'));
  });
});

describe("this node's facts", () => {
  it('are asked while the layers are still being written, not after them', async () => {
    // A podman that marks that it ran; the checkpoint's page files wait for that mark.
    const bin = await tempDir('ckpt-bin-');
    const mark = join(bin, 'asked');
    await writeFile(join(bin, 'podman'), `#!/bin/sh\ntouch '${mark}'\necho 'podman version 9.8.7'\n`, { mode: 0o755 });
    const source = await openCheckpoint(fixture('podman-counter.tar'));
    const waiting: CheckpointSource = {
      name: source.name,
      kind: source.kind,
      fingerprint: () => source.fingerprint(),
      async *entries(signal) {
        for await (const item of source.entries(signal)) {
          if (item.entry.path.startsWith('checkpoint/pages-')) {
            for (let waited = 0; !existsSync(mark); waited += 10) {
              if (waited > 10_000) throw new Error('podman --version did not run before the memory pages were read');
              await sleep(10);
            }
          }
          yield item;
        }
      },
    };
    const path = process.env.PATH;
    process.env.PATH = `${bin}:${path ?? ''}`;
    try {
      const layout = await OciLayout.open(join(await tempDir(), 'layout'), { create: true });
      const result = await buildImage(waiting, layout, { tag: 't' });
      expect(result.host?.engineVersion).toBe('9.8.7');
      const manifest = ManifestSchema.parse(await blobJson(layout.dir, result.descriptor.digest));
      expect(manifest.annotations?.['org.criu.checkpoint.engine.version']).toBe('9.8.7');
    } finally {
      process.env.PATH = path;
    }
  });

  it('that a program failed to give are asked again by the next build, not taken from the cache', async () => {
    const bin = await tempDir('ckpt-bin-');
    const podman = join(bin, 'podman');
    // Two scripts of one size, written over one file with one time: the same identity to ckpt.
    const answers = "#!/bin/sh\necho 'podman version 9.8.7'\n";
    const fails = '#!/bin/sh\nexit 1\n'.padEnd(answers.length - 1, '#') + '\n';
    await writeFile(podman, fails, { mode: 0o755 });
    await utimes(podman, new Date(0), new Date(0));
    const cache = new BuildCache(await tempDir('ckpt-cache-'));
    const path = process.env.PATH;
    process.env.PATH = `${bin}:${path ?? ''}`;
    try {
      // Into one layout: the second build finds every layer there, as a re-push does.
      const layout = join(await tempDir(), 'layout');
      const build1 = async () =>
        buildImage(await openCheckpoint(fixture('podman-counter.tar')), await OciLayout.open(layout, { create: true }), { cache, tag: 't' });
      expect((await build1()).host?.engineVersion).toBeUndefined();
      // Same program file, same facts key: only the failure says to ask again.
      await writeFile(podman, answers);
      await utimes(podman, new Date(0), new Date(0));
      expect((await build1()).host?.engineVersion).toBe('9.8.7');
    } finally {
      process.env.PATH = path;
    }
  });

  it('of a program upgraded while the build asked it are asked again by the next build', async () => {
    const bin = await tempDir('ckpt-bin-');
    // The other programs answer too, whatever this machine has: the facts are complete and cached.
    for (const program of ['criu', 'crun', 'runc', 'conmon']) {
      await writeFile(join(bin, program), `#!/bin/sh\necho '${program} version 1.0'\n`, { mode: 0o755 });
    }
    // A podman that answers 9.8.7 and, as it does, is replaced by 10.0.1 (a package upgrade).
    const upgraded = `#!/bin/sh\necho 'podman version 10.0.1'\n`;
    await writeFile(join(bin, 'podman.next'), upgraded, { mode: 0o755 });
    await writeFile(join(bin, 'podman'), `#!/bin/sh\nmv "$0.next" "$0"\necho 'podman version 9.8.7'\n`, { mode: 0o755 });
    const cache = new BuildCache(await tempDir('ckpt-cache-'));
    const layout = join(await tempDir(), 'layout');
    const build1 = async () =>
      buildImage(await openCheckpoint(fixture('podman-counter.tar')), await OciLayout.open(layout, { create: true }), { cache, tag: 't' });
    const path = process.env.PATH;
    process.env.PATH = `${bin}:${path ?? ''}`;
    try {
      expect((await build1()).host?.engineVersion).toBe('9.8.7');
      expect(await readFile(join(bin, 'podman'), 'utf8')).toBe(upgraded);
      // The facts were stored under the key of the podman that gave them, not of the one installed after.
      expect((await build1()).host?.engineVersion).toBe('10.0.1');
    } finally {
      process.env.PATH = path;
    }
  });

  it('are asked once per node: the build of another checkpoint takes them from the cache', async () => {
    const bin = await tempDir('ckpt-bin-');
    const asked = join(bin, 'asked');
    const program = (name: string, version: string) =>
      writeFile(join(bin, name), `#!/bin/sh\necho ${name} >> '${asked}'\necho '${name} version ${version}'\n`, { mode: 0o755 });
    for (const name of ['criu', 'crun', 'runc', 'conmon']) await program(name, '1.0.0');
    await program('podman', '9.8.7');
    const cache = new BuildCache(await tempDir('ckpt-cache-'));
    const build = async (name: string) =>
      buildImage(await openCheckpoint(fixture(name)), await OciLayout.open(join(await tempDir(), 'layout'), { create: true }), { cache, tag: 't' });
    const path = process.env.PATH;
    process.env.PATH = `${bin}:${path ?? ''}`;
    try {
      expect((await build('podman-counter.tar')).host?.engineVersion).toBe('9.8.7');
      expect(existsSync(asked)).toBe(true);
      await rm(asked);
      // Another checkpoint (another build key), same node: nothing is run.
      const second = await build('podman-counter.tar.gz');
      expect(second.host?.engineVersion).toBe('9.8.7');
      expect(second.host?.conmonVersion).toBe('conmon version 1.0.0');
      expect(existsSync(asked)).toBe(false);
      // Podman upgraded: the next build asks again.
      await program('podman', '10.0.1');
      await utimes(join(bin, 'podman'), new Date(), new Date(Date.now() + 5000));
      expect((await build('podman-counter.tar.zst')).host?.engineVersion).toBe('10.0.1');
      expect(await readFile(asked, 'utf8')).toContain('podman');
    } finally {
      process.env.PATH = path;
    }
  });

  it('that changed are published with the cached layers, without reading the checkpoint again', async () => {
    const bin = await tempDir('ckpt-bin-');
    const podman = join(bin, 'podman');
    const mark = join(bin, 'asked');
    const script = (version: string) => `#!/bin/sh\ntouch '${mark}'\necho 'podman version ${version}'\n`;
    await writeFile(podman, script('9.8.7'), { mode: 0o755 });
    const cache = new BuildCache(await tempDir('ckpt-cache-'));
    const layout = join(await tempDir(), 'layout');
    let reads = 0;
    const buildOnce = async () => {
      const source = await openCheckpoint(fixture('podman-counter.tar'));
      const counted: CheckpointSource = {
        name: source.name,
        kind: source.kind,
        fingerprint: () => source.fingerprint(),
        entries: (signal) => {
          reads++;
          return source.entries(signal);
        },
      };
      const target = await OciLayout.open(layout, { create: true });
      const result = await buildImage(counted, target, { cache, tag: 't' });
      const manifest = ManifestSchema.parse(await blobJson(layout, result.descriptor.digest));
      return { result, engine: manifest.annotations?.['org.criu.checkpoint.engine.version'] };
    };
    const path = process.env.PATH;
    process.env.PATH = `${bin}:${path ?? ''}`;
    try {
      const first = await buildOnce();
      expect(first.engine).toBe('9.8.7');
      // Podman upgraded: a new file, so new facts.
      await writeFile(podman, script('10.0.1'));
      const second = await buildOnce();
      expect(second.engine).toBe('10.0.1');
      expect(second.result.layers.map((l) => l.desc.digest)).toEqual(first.result.layers.map((l) => l.desc.digest));
      expect(reads).toBe(1);
      // The new facts were cached: the next build neither reads the checkpoint nor asks Podman.
      await rm(mark);
      expect((await buildOnce()).engine).toBe('10.0.1');
      expect(reads).toBe(1);
      expect(existsSync(mark)).toBe(false);
    } finally {
      process.env.PATH = path;
    }
  });
});
