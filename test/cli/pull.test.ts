import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FaultProxy, startFaultProxy } from '../helpers/fault-proxy.js';
import { type RegistryServer, startRegistry } from '../helpers/registry.js';
import { ckpt, extractFixture, fixture, tempDir, treeOf } from '../helpers/tree.js';
import { buildImage } from '../unpack/helpers.js';

async function expectSameTree(actual: string, expected: string): Promise<void> {
  const [a, e] = await Promise.all([treeOf(actual), treeOf(expected)]);
  expect([...a.keys()]).toEqual([...e.keys()]);
  for (const [path, item] of e) expect(a.get(path), path).toEqual(item);
}

async function untar(archive: string): Promise<string> {
  const dir = await tempDir('ckpt-untar-');
  await execa('tar', ['-xpf', archive, '-C', dir]);
  return dir;
}

describe('ckpt pull', () => {
  let registry: RegistryServer;
  let proxy: FaultProxy;
  let original: string;
  let digest: string;
  beforeAll(async () => {
    registry = await startRegistry();
    proxy = await startFaultProxy(registry.host);
    original = await extractFixture('podman-counter.tar.zst');
    const pushed = await ckpt(['push', fixture('podman-counter.tar.zst'), `${registry.host}/ckpt/counter:v1`, '-q']);
    expect(pushed.exitCode, pushed.stderr).toBe(0);
    digest = pushed.stdout.trim();
  });
  afterAll(async () => {
    await proxy.stop();
    await registry.stop();
  });

  it('to a directory: the checkpoint tree, readable by its owner only', async () => {
    const dest = join(await tempDir(), 'counter');
    const run = await ckpt(['pull', `${registry.host}/ckpt/counter:v1`, dest, '--json']);
    expect(run.exitCode, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ kind: 'directory', descriptor: { digest } });
    expect((await stat(dest)).mode & 0o777).toBe(0o700);
    // The top directory is ours (0700); everything in it is as in the checkpoint.
    const [pulled, expected] = await Promise.all([treeOf(dest), treeOf(original)]);
    expect(pulled).toEqual(expected);
  });

  it('to NAME.tar: a kubelet-style archive whose tree equals the checkpoint', async () => {
    const dest = join(await tempDir(), 'checkpoint.tar');
    const run = await ckpt(['pull', `${registry.host}/ckpt/counter:v1`, dest]);
    expect(run.exitCode, run.stderr).toBe(0);
    expect((await stat(dest)).mode & 0o777).toBe(0o600);
    await expectSameTree(await untar(dest), original);
    const { stdout } = await execa('tar', ['-tf', dest]);
    expect(stdout.split('\n')).toContain('checkpoint/inventory.img');
  });

  it('to an OCI layout, with the same digest', async () => {
    const layout = join(await tempDir(), 'layout');
    const run = await ckpt(['pull', `${registry.host}/ckpt/counter:v1`, `oci:${layout}:v1`, '-q']);
    expect(run.stdout.trim()).toBe(digest);
  });

  it('an image pushed by skopeo (Podman --create-image) pulls into the original tree', async () => {
    const copied = await execa('skopeo', [
      'copy',
      '--dest-tls-verify=false',
      `oci:${fixture('podman-image-layout')}:counter-ckpt`,
      `docker://${registry.host}/podman/counter:ckpt`,
    ]);
    expect(copied.exitCode).toBe(0);
    const dest = join(await tempDir(), 'counter');
    const run = await ckpt(['pull', `${registry.host}/podman/counter:ckpt`, dest]);
    expect(run.exitCode, run.stderr).toBe(0);
    const bundle = join(await tempDir(), 'bundle');
    await execa('umoci', ['unpack', '--image', `${fixture('podman-image-layout')}:counter-ckpt`, bundle]);
    const [pulled, expected] = await Promise.all([treeOf(dest), treeOf(join(bundle, 'rootfs'))]);
    expect([...pulled.keys()]).toEqual([...expected.keys()]);
    for (const [path, item] of expected) if (path !== '') expect(pulled.get(path), path).toEqual(item);
  });

  it('reads the manifest with one request: no HEAD first, no second GET', async () => {
    const before = proxy.requests.length;
    const dest = join(await tempDir(), 'counter');
    const run = await ckpt(['pull', `${proxy.host}/ckpt/counter:v1`, dest]);
    expect(run.exitCode, run.stderr).toBe(0);
    const manifests = proxy.requests.slice(before).filter((r) => r.url.includes('/manifests/'));
    expect(manifests).toEqual([{ method: 'GET', url: '/v2/ckpt/counter/manifests/v1' }]);
  });

  it('survives a download cut in the middle', async () => {
    const rule = proxy.add({ method: 'GET', url: /\/blobs\/sha256:/, fault: { kind: 'cut-response', afterBytes: 4096 }, times: 2 });
    const dest = join(await tempDir(), 'counter');
    const run = await ckpt(['pull', `${proxy.host}/ckpt/counter:v1`, dest]);
    expect(run.exitCode, run.stderr).toBe(0);
    expect(rule.fired).toBeGreaterThan(0);
    expect(await treeOf(dest)).toEqual(await treeOf(original));
  });

  it('a corrupted blob fails with exit 7, naming the image and the blob, and leaves nothing behind', async () => {
    proxy.add({ method: 'GET', url: /\/blobs\/sha256:/, fault: { kind: 'corrupt' }, times: 100 });
    const parent = await tempDir();
    for (const destination of ['counter', 'counter.tar']) {
      const run = await ckpt(['pull', `${proxy.host}/ckpt/counter:v1`, join(parent, destination)]);
      expect(run.exitCode).toBe(7);
      expect(run.stderr).toMatch(new RegExp(`^ckpt: ${proxy.host}/ckpt/counter@sha256:[a-f0-9]{64}: .*digest`));
    }
    expect(await readdir(parent)).toEqual([]);
  });

  // After the proxy tests above: its rule corrupts every later answer for the manifest.
  it('a manifest that does not match the digest the registry states fails with exit 7', async () => {
    // A byte flipped inside a string keeps the JSON valid: only the digest can tell.
    proxy.add({ method: 'GET', url: /\/manifests\/v1$/, fault: { kind: 'corrupt', at: 20 }, times: 100 });
    const parent = await tempDir();
    const run = await ckpt(['pull', `${proxy.host}/ckpt/counter:v1`, join(parent, 'counter')]);
    expect(run.exitCode, run.stderr).toBe(7);
    expect(run.stderr).toContain(digest);
    expect(await readdir(parent)).toEqual([]);
  });

  it('a destination that exists and is not empty is refused', async () => {
    const dest = await tempDir();
    await execa('touch', [join(dest, 'precious')]);
    const run = await ckpt(['pull', `${registry.host}/ckpt/counter:v1`, dest]);
    expect(run.exitCode).toBe(8);
    expect(await readdir(dest)).toEqual(['precious']);
  });

  it('a destination named as a compressed archive is refused, not made a directory of that name', async () => {
    const parent = await tempDir();
    for (const name of ['counter.tar.gz', 'counter.TGZ', 'counter.tar.zst']) {
      const run = await ckpt(['pull', `${registry.host}/ckpt/counter:v1`, join(parent, name)]);
      expect(run.exitCode).toBe(2);
      expect(run.stderr).toBe(`ckpt: ${join(parent, name)}: pull writes an uncompressed archive (NAME.tar, as CRI-O and Podman read it) or a directory`);
    }
    expect(await readdir(parent)).toEqual([]);
  });
});

describe('ckpt pull of an image that is not a checkpoint', () => {
  it('is refused with exit 3 for a directory and a .tar, and leaves nothing; a copy to oci: takes it', async () => {
    const work = await tempDir();
    const layout = join(work, 'plain');
    await buildImage(layout, [{ entries: [{ name: 'etc/', type: 'directory' }, { name: 'etc/hello.txt', body: 'hi' }] }], { tag: 'plain' });
    for (const out of ['out', 'out.tar']) {
      const run = await ckpt(['pull', `oci:${layout}:plain`, join(work, out)]);
      expect(run.exitCode, run.stderr).toBe(3);
      expect(run.stderr).toContain('not a checkpoint image');
    }
    expect((await readdir(work)).sort()).toEqual(['plain']);
    expect((await ckpt(['pull', `oci:${layout}:plain`, `oci:${join(work, 'copy')}:plain`])).exitCode).toBe(0);
  });
});
